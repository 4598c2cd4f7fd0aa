"""ppo_atari.py and sprig_ppo_atari.py are twins: SPRIG's script is the PPO script plus SPRIG, and nothing else.

Outside the definitions that are SPRIG's own (or PPO's own, where SPRIG replaces them), the two files may differ
only in the lines listed here; the pieces both scripts share are the same code, line for line.
"""

import ast
import difflib
import inspect
import os

import ppo_atari
import pytest
import sprig_ppo_atari
from helpers import REPO

# Definitions only one script has, or that SPRIG rewrites: the perception leader, the follower heads, the two stages.
PPO_OWN = {"Agent", "ppo_step"}
SPRIG_OWN = {"GatedSelfAttention", "Perception", "attention_cost", "Agent", "leader_step", "follower_step", "SPRIG_STATS"}
SPRIG_OWN |= {"follower_utilities", "conjugate_gradient", "implicit_term", "implicit_leader_gradient"}  # implicit
SPRIG_OWN |= {"joint_step", "LEADER_FLAGS"}  # --update joint
SPRIG_OWN |= {"attention_overlays", "attention_figure", "RunControl.log_attention"}  # drawing the masks

# The remaining lines that differ, stripped of indentation: "-" only in ppo_atari.py, "+" only in sprig_ppo_atari.py.
DIFFERING_LINES = [
    # imports that only SPRIG's network and game need
    "+import itertools",
    "+from typing import Literal",
    "+import torch.nn.functional as F",
    # Args: SPRIG's game, and drawing its attention
    "+# SPRIG's game: the leader (perception, theta) and the follower (policy and value, phi)",
    '+update: Literal["stackelberg", "joint"] = "stackelberg"',
    '+"""SPRIG\'s two-stage game (stackelberg), or its network trained as plain PPO, one optimiser over all (joint: the '
    'control)"""',
    "+alpha_coop: float = 0.7",
    '+"""SPRIG\'s cooperation weight: the leader maximises alpha * (-C_theta) + (1 - alpha) * u_F"""',
    "+attn_cost_coef: float = 1e-4",
    '+"""SPRIG\'s lambda_c, the weight of the attention cost C_theta"""',
    '+leader_utility: Literal["follower", "pg"] = "follower"',
    "+\"\"\"SPRIG's u_F in the leader's utility: the follower's PPO objective (follower), or Algorithm 1's printed "
    'u_policy (pg)"""',
    '+leader_gradient: Literal["direct", "implicit"] = "direct"',
    '+"""the leader\'s gradient: d u_L/d theta with phi held (direct, Algorithm 1), or through the follower\'s response '
    '(implicit)"""',
    "+implicit_damping: float = 1.0",
    '+"""--leader-gradient implicit: lambda, added to the follower\'s Hessian -d2 u_F/d phi2 before it is inverted"""',
    "+implicit_cg_iters: int = 10",
    '+"""--leader-gradient implicit: conjugate-gradient iterations per follower head (policy, value) to solve for w"""',
    "+implicit_max_ratio: float = 1.0",
    '+"""--leader-gradient implicit: the implicit term is scaled down to at most this many times the direct term\'s '
    'norm"""',
    "+log_attention_every: int = 0",
    '+"""every N iterations, draw env 0\'s latest frames with the three blocks\' masks to TensorBoard (sprig/attention)"""',
    # main(): two optimisers (or, under --update joint, one), annealed together; the two stages; SPRIG's logs
    "-optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)",
    '-optimizers = {"optimizer": optimizer}  # as named in checkpoints',
    '+if args.update == "stackelberg":',
    "+# Two players, two optimisers over disjoint parameter sets: theta (perception) and phi (policy and value).",
    "+leader_optimizer = optim.Adam(agent.leader_parameters(), lr=args.learning_rate, eps=1e-5)",
    "+follower_optimizer = optim.Adam(agent.follower_parameters(), lr=args.learning_rate, eps=1e-5)",
    '+optimizers = {"leader_optimizer": leader_optimizer, "follower_optimizer": follower_optimizer}  # as in checkpoints',
    "+else:  # --update joint, the architecture control (joint_step, after main): PPO's one optimiser over theta and phi",
    '+optimizers = {"joint_optimizer": optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)}',
    "+for optimizer in optimizers.values():",
    "-stats = ppo_step(agent, optimizer, mb, args)",
    '+if args.update == "stackelberg":',
    "+stats = leader_step(agent, leader_optimizer, mb, args)  # the leader commits first ...",
    "+stats |= follower_step(agent, follower_optimizer, mb, args)  # ... then the follower responds",
    "+else:  # --update joint: one PPO step on theta and phi together (joint_step, after main)",
    '+stats = joint_step(agent, optimizers["joint_optimizer"], mb, args)',
    '-writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)',
    '+writer.add_scalar("charts/learning_rate", next(iter(optimizers.values())).param_groups[0]["lr"], global_step)',
    "+for name in SPRIG_STATS:  # SPRIG's game, averaged over the iteration's minibatches (grad norms before clipping)",
    "+if name in stats:  # (each only where its update computes it)",
    '+writer.add_scalar(f"sprig/{name}", stats[name].mean(), global_step)',
    "+run.log_attention(iteration, global_step, obs)  # every --log-attention-every iterations: env 0's frames and masks",
    # the run machinery: SPRIG's flags checked, and checkpoints older than --leader-utility
    '-"non-negative": (lambda value: value >= 0, ["ent_coef", "vf_coef", "checkpoint_every", "eval_episodes"]),',
    '-"in [0, 1]": (lambda value: 0 <= value <= 1, ["gamma", "gae_lambda", "repeat_action_probability"]),',
    '+"non-negative": (',
    "+lambda value: value >= 0,",
    '-+ ["learning_rate", "clip_coef", "max_grad_norm", "target_kl"],',
    '++ ["learning_rate", "clip_coef", "max_grad_norm", "target_kl"]',
    '++ ["implicit_cg_iters"],',
    '+["ent_coef", "vf_coef", "checkpoint_every", "eval_episodes"]',
    '++ ["attn_cost_coef", "log_attention_every"]',
    '++ ["implicit_damping", "implicit_max_ratio"],',
    "+),",
    '+"in [0, 1]": (lambda value: 0 <= value <= 1, ["gamma", "gae_lambda", "repeat_action_probability", "alpha_coop"]),',
    '+saved.setdefault("leader_utility", "pg")  # checkpoints from before --leader-utility trained with the printed form',
    '+saved.setdefault("leader_gradient", "direct")  # and those from before --leader-gradient with the direct one',
    '+saved.setdefault("update", "stackelberg")  # and those from before --update played the game',
    "+ignored = [f\"--{name.replace('_', '-')}\" for name in LEADER_FLAGS if getattr(args, name) != getattr(Args, name)]",
    '+if args.update == "joint" and ignored:',
    "+fail(f\"--update joint has no leader stage, so {', '.join(ignored)} would change nothing; leave them out\")",
]

# What both scripts share: the env, GAE, the PPO loss and its statistics, and the run machinery's pieces.
SHARED = ["Args", "EpisodicLife", "FireReset", "make_env", "make_envs", "finished_episodes", "layer_init", "compute_gae"]
SHARED += ["ppo_loss", "to_host", "GracefulStop", "EnvState", "find_divergence", "evaluate", "format_seconds"]
SHARED += ["load_torch_file", "get_rng_state", "set_rng_state", "to_saveable", "from_saveable"]


def definitions(tree):
    """{name: (first line, last line)} of the module's top-level definitions and RunControl's methods (1-based)."""
    spans = {}
    for node in tree.body:
        names = [target.id for target in getattr(node, "targets", []) if isinstance(target, ast.Name)]
        names += [node.target.id] if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) else []
        names += [node.name] if hasattr(node, "name") else []
        first = min([node.lineno] + [decorator.lineno for decorator in getattr(node, "decorator_list", [])])
        for name in names:
            spans.setdefault(name, []).append((first, node.end_lineno))
        if getattr(node, "name", None) == "RunControl":
            for method in node.body:
                if isinstance(method, ast.FunctionDef):
                    first = min([method.lineno] + [decorator.lineno for decorator in method.decorator_list])
                    spans.setdefault(f"RunControl.{method.name}", []).append((first, method.end_lineno))
    return spans


def lines_outside(script, own):
    """The script's non-blank lines, stripped, without its docstring and the definitions named in `own`."""
    source = open(os.path.join(REPO, script)).read()
    tree = ast.parse(source)
    spans = definitions(tree)
    dropped = set(range(tree.body[0].lineno, tree.body[0].end_lineno + 1))  # the module docstring
    lines = source.splitlines()
    for name in own:
        assert name in spans, f"{script} has no {name}"
        for first, last in spans[name]:
            while first > 1 and (not lines[first - 2].strip() or lines[first - 2].startswith("#")):
                first -= 1  # the comments above a definition belong to it
            dropped |= set(range(first, last + 1))
    return [line.strip() for number, line in enumerate(lines, 1) if number not in dropped and line.strip()]


def test_the_scripts_differ_only_in_sprigs_own_lines():
    ppo = lines_outside("ppo_atari.py", PPO_OWN)
    sprig = lines_outside("sprig_ppo_atari.py", SPRIG_OWN)
    differing = [line[0] + line[2:] for line in difflib.ndiff(ppo, sprig) if line[0] in "+-"]
    assert sorted(differing) == sorted(DIFFERING_LINES)


def test_the_fence_stands_at_the_same_place_in_the_order_of_both_scripts():
    """The algorithm first, the run machinery after main(): the fence is the first banner after main in both."""
    for script in ("ppo_atari.py", "sprig_ppo_atari.py"):
        source = open(os.path.join(REPO, script)).read()
        assert source.index("\ndef main():") < source.index("# Run machinery:") < source.index("\nclass RunControl:")


@pytest.mark.parametrize("name", SHARED)
def test_shared_pieces_are_the_same_code_in_both_scripts(name):
    assert inspect.getsource(getattr(ppo_atari, name)) == inspect.getsource(getattr(sprig_ppo_atari, name)) or (
        name == "Args"  # SPRIG's Args has SPRIG's fields besides; the shared ones are the same
        and all(
            field in sprig_ppo_atari.Args.__dataclass_fields__
            and ppo_atari.Args.__dataclass_fields__[field].default == sprig_ppo_atari.Args.__dataclass_fields__[field].default
            for field in ppo_atari.Args.__dataclass_fields__
            if field not in ("exp_name", "wandb_project_name")
        )
    )


def test_nothing_before_the_fence_calls_into_it_but_through_parse_args_and_run_control():
    for module, script in ((ppo_atari, "ppo_atari.py"), (sprig_ppo_atari, "sprig_ppo_atari.py")):
        source = open(os.path.join(REPO, script)).read()
        fence = source.index("# Run machinery:")
        tree = ast.parse(source)
        fenced = {name for name, spans in definitions(tree).items() if spans[0][0] > source[:fence].count("\n") + 1}
        fenced = {name for name in fenced if "." not in name}
        used = {
            node.id
            for node in ast.walk(ast.parse(source[:fence]))
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
        }
        assert used & fenced == {"parse_args", "RunControl"}, script
