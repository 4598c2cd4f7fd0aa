"""ppo_atari.py and sprig_ppo_atari.py are twins: SPRIG's script is the PPO script plus SPRIG, and nothing else.

Outside the definitions that are SPRIG's own (or PPO's own, where SPRIG replaces them), every block of lines in
which the two files differ is SPRIG's, by the names it uses; the pieces both scripts share are the same code, line for
line.
"""

import ast
import difflib
import inspect
import os
import re

import ppo_atari
import pytest
import sprig_ppo_atari
from helpers import REPO

# Definitions only one script has, or that SPRIG rewrites: the perception leader, the follower heads, the two stages.
PPO_OWN = {"Agent", "ppo_step"}
SPRIG_OWN = {"GatedSelfAttention", "Perception", "attention_cost", "Agent", "leader_step", "follower_step", "PPO_LOSS_STATS"}
SPRIG_OWN |= {"follower_utilities", "conjugate_gradient", "implicit_term", "implicit_leader_gradient"}  # implicit
SPRIG_OWN |= {"joint_step", "LEADER_FLAGS"}  # --update joint
SPRIG_OWN |= {"NatureCNN", "perception_of"}  # --perception nature
SPRIG_OWN |= {"attention_overlays", "attention_figure", "RunControl.log_attention"}  # drawing the masks

# Outside those definitions, a line only SPRIG's script has must say whose it is: SPRIG's game, its players, its
# network's attention. A block of lines that differs passes if one of its lines names one of these; a line PPO has and
# SPRIG neither keeps nor replaces is drift.
SPRIG_WORDS = re.compile(
    r"sprig|leader|follower|joint|stackelberg|implicit|attention|attn|perception|theta|phi|alpha|mask", re.I
)

# What both scripts share: the env, GAE, the PPO loss and its statistics, and the run machinery's pieces.
SHARED = ["Args", "EpisodicLife", "FireReset", "make_env", "make_envs", "finished_episodes", "layer_init", "compute_gae"]
SHARED += ["ppo_loss", "to_host", "GracefulStop", "EnvState", "find_divergence", "evaluate", "format_seconds"]
SHARED += ["load_torch_file", "get_rng_state", "set_rng_state", "to_saveable", "from_saveable"]
SHARED += ["sample", "capture_cuda_graph", "map_tensors", "CudaGraphed"]  # --cudagraphs


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


def differing_blocks():
    """The blocks of lines that differ between the scripts outside their own definitions: (PPO's, SPRIG's) each."""
    ppo = lines_outside("ppo_atari.py", PPO_OWN)
    sprig = lines_outside("sprig_ppo_atari.py", SPRIG_OWN)
    opcodes = difflib.SequenceMatcher(None, ppo, sprig, autojunk=False).get_opcodes()
    return [(ppo[i1:i2], sprig[j1:j2]) for tag, i1, i2, j1, j2 in opcodes if tag != "equal"]


def test_every_line_that_differs_outside_their_own_definitions_is_sprigs():
    ppo_source = open(os.path.join(REPO, "ppo_atari.py")).read()
    blocks = differing_blocks()
    assert blocks  # SPRIG's Args and its two stages in main() differ, at least
    for ppo_lines, sprig_lines in blocks:
        assert sprig_lines, f"ppo_atari.py has lines that sprig_ppo_atari.py lost: {ppo_lines}"
        imports = [line for line in sprig_lines if line.startswith(("import ", "from "))]
        for line in imports:  # an import of SPRIG's own: a name the PPO script never uses
            name = line.split()[-1]
            assert not re.search(rf"\b{re.escape(name)}\b", ppo_source), f"{line!r}: ppo_atari.py uses {name} too"
        rest = [line for line in sprig_lines if line not in imports]
        assert not rest or any(SPRIG_WORDS.search(line) for line in rest), f"drift, not SPRIG: {ppo_lines} -> {rest}"


def test_the_twins_test_catches_a_hyperparameter_changed_in_one_script(monkeypatch):
    original = lines_outside

    def drifted(script, own):  # PPO's clip coefficient changed in sprig_ppo_atari.py alone
        lines = original(script, own)
        return [
            line.replace("clip_coef: float = 0.1", "clip_coef: float = 0.2") if "sprig" in script else line for line in lines
        ]

    monkeypatch.setitem(globals(), "lines_outside", drifted)
    with pytest.raises(AssertionError, match="drift, not SPRIG"):
        test_every_line_that_differs_outside_their_own_definitions_is_sprigs()


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
