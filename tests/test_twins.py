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
SPRIG_OWN |= {"SCALED_FINAL_NORM_GAIN"}  # --perception attention-scaled
SPRIG_OWN |= {"attention_overlays", "attention_figure", "RunControl.log_attention"}  # drawing the masks

# Outside those definitions, a line only SPRIG's script has must say whose it is: SPRIG's game, its players, its
# network's attention. A block of lines that differs passes if one of its lines names one of these; a line PPO has and
# SPRIG neither keeps nor replaces is drift.
SPRIG_WORDS = re.compile(
    r"sprig|leader|follower|player|joint|stackelberg|implicit|attention|attn|perception|theta|phi|alpha|mask", re.I
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


def read(script):
    return open(os.path.join(REPO, script)).read()


def lines_outside(source, own):
    """[(line number, the line stripped)] of the source's non-blank lines, without its docstring and the definitions
    named in `own` (with the comments above each)."""
    tree = ast.parse(source)
    spans = definitions(tree)
    dropped = set(range(tree.body[0].lineno, tree.body[0].end_lineno + 1))  # the module docstring
    lines = source.splitlines()
    for name in own:
        assert name in spans, f"no definition of {name}"
        for first, last in spans[name]:
            while first > 1 and (not lines[first - 2].strip() or lines[first - 2].startswith("#")):
                first -= 1  # the comments above a definition belong to it
            dropped |= set(range(first, last + 1))
    return [(number, line.strip()) for number, line in enumerate(lines, 1) if number not in dropped and line.strip()]


def statement_of(source):
    """{line number: the source lines of the statement it belongs to}, so that each line is judged with the rest of
    its statement: a simple statement's lines (`optimizers = {` with its keys), a compound statement's header with
    its whole body (`for name in ...:` with what it does to each; each line of the body is judged by its own
    statement), a run of comment lines together. Other lines (`else:`) stand alone."""
    lines, units = source.splitlines(), {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.stmt):
            body = getattr(node, "body", None)
            header = body[0].lineno - 1 if isinstance(body, list) and body else node.end_lineno
            units |= dict.fromkeys(range(node.lineno, max(node.lineno, header) + 1), (node.lineno, node.end_lineno))
    comments = [number for number, line in enumerate(lines, 1) if line.strip().startswith("#")]
    for number in comments:
        first, last = number, number
        while first - 1 in comments:
            first -= 1
        while last + 1 in comments:
            last += 1
        units[number] = (first, last)
    return {number: "\n".join(lines[first - 1 : last]) for number, (first, last) in units.items()}


def drift(ppo_source, sprig_source):
    """The lines of sprig_ppo_atari.py that differ from ppo_atari.py outside their own definitions and are not SPRIG's:
    neither an import of a name PPO never uses, nor a line whose statement (or comment) names SPRIG's game, its players
    or its network's attention; and the lines PPO has that SPRIG lost."""
    ppo, sprig = lines_outside(ppo_source, PPO_OWN), lines_outside(sprig_source, SPRIG_OWN)
    units = statement_of(sprig_source)
    matcher = difflib.SequenceMatcher(None, [line for _, line in ppo], [line for _, line in sprig], autojunk=False)
    found = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if j1 == j2:
            found += [f"lost: {line}" for _, line in ppo[i1:i2]]
        for number, line in sprig[j1:j2]:
            if line.startswith(("import ", "from ")):
                name = line.split()[-1]  # an import of SPRIG's own: a name the PPO script never uses
                if re.search(rf"\b{re.escape(name)}\b", ppo_source):
                    found.append(f"{line!r}: ppo_atari.py uses {name} too")
            elif not SPRIG_WORDS.search(units.get(number, line)):
                found.append(f"line {number}: {line}")
    return found


def test_every_line_that_differs_outside_their_own_definitions_is_sprigs():
    assert drift(read("ppo_atari.py"), read("sprig_ppo_atari.py")) == []


@pytest.mark.parametrize(
    "original, drifted",
    [
        ("    clip_coef: float = 0.1\n", "    clip_coef: float = 0.2\n"),  # PPO's clip coefficient changed in SPRIG's alone
        (  # a hyperparameter changed on the line after one of SPRIG's own
            "    agent = Agent(envs.single_action_space.n, args.perception).to(device)\n",
            "    agent = Agent(envs.single_action_space.n, args.perception).to(device)\n    args.gamma = 0.98\n",
        ),
    ],
)
def test_the_twins_test_catches_a_drift_planted_in_sprigs_script(original, drifted):
    sprig = read("sprig_ppo_atari.py")
    assert sprig.count(original) == 1
    found = drift(read("ppo_atari.py"), sprig.replace(original, drifted))
    assert len(found) == 1 and found[0].endswith(drifted.splitlines()[-1].strip()), found


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
