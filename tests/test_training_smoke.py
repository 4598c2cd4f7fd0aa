"""Both training scripts end to end: a couple of tiny updates, their TensorBoard tags, and run-to-run determinism."""

import importlib
import os

import pytest
import torch
from helpers import TINY_RUN, read_scalars, run_dirs, run_script

CLEANRL_TAGS = {
    "charts/learning_rate",
    "charts/SPS",
    "charts/episodic_return",
    "charts/episodic_length",
    "losses/value_loss",
    "losses/policy_loss",
    "losses/entropy",
    "losses/old_approx_kl",
    "losses/approx_kl",
    "losses/clipfrac",
    "losses/explained_variance",
}
SPRIG_TAGS = {
    "sprig/attention_cost",
    "sprig/u_policy",
    "sprig/u_follower",
    "sprig/leader_utility",
    "sprig/leader_grad_norm",
    "sprig/follower_grad_norm",
    "sprig/mask_mean_block1",
    "sprig/mask_mean_block2",
    "sprig/mask_mean_block3",
    "sprig/leader_learning_rate",
    "sprig/follower_learning_rate",
    "sprig/feature_norm",
}
SCRIPTS = {"ppo_atari.py": CLEANRL_TAGS, "sprig_ppo_atari.py": CLEANRL_TAGS | SPRIG_TAGS}


@pytest.fixture(scope="module", params=sorted(SCRIPTS))
def two_runs(request, tmp_path_factory):
    """The same tiny run twice (same seed, --torch-deterministic), each in its own directory."""
    script, results = request.param, []
    for name in ("first", "second"):
        cwd = tmp_path_factory.mktemp(name)
        flags = [*TINY_RUN, "--total-timesteps", "384", "--max-episode-steps", "40", "--seed", "3", "--save-model"]
        result = run_script(script, *flags, cwd=cwd)
        (run_dir,) = run_dirs(cwd)
        results.append((result, read_scalars(run_dir), run_dir))
    return script, results


def test_smoke_run_logs_its_tags_and_episodes(two_runs):
    script, ((result, scalars, _), _) = two_runs
    assert SCRIPTS[script] == {tag for tag in scalars if tag.split("/")[0] in ("charts", "losses", "sprig")}
    assert [step for step, _ in scalars["charts/SPS"]] == [128, 256, 384]
    # 40-step episodes in a 3 x 64-step rollout: every env finishes at least 4 (truncated) episodes
    assert len(scalars["charts/episodic_return"]) >= 8
    assert len(scalars["charts/episodic_length"]) == len(scalars["charts/episodic_return"])
    assert "iter 3/3 | step 384 | SPS" in result.stdout


def test_same_seed_gives_identical_losses(two_runs):
    script, ((_, first, _), (_, second, _)) = two_runs
    for tag in SCRIPTS[script] - {"charts/SPS"}:
        assert first[tag] == second[tag], tag


def test_save_model_writes_weights_that_load_into_the_scripts_agent(two_runs):
    script, ((result, _, run_dir), _) = two_runs
    module = importlib.import_module(script[: -len(".py")])
    path = os.path.join(run_dir, f"{script[: -len('.py')]}.cleanrl_model")
    assert f"model saved to runs/{os.path.basename(run_dir)}/" in result.stdout
    agent = module.Agent(num_actions=9)
    agent.load_state_dict(torch.load(path, weights_only=True))


@pytest.mark.parametrize("leader_utility", ["follower", "pg"])
def test_an_implicit_leader_run_trains_end_to_end_and_logs_the_implicit_terms_each_iteration(leader_utility, tmp_path):
    flags = [*TINY_RUN, "--total-timesteps", "256", "--max-episode-steps", "40", "--leader-gradient", "implicit"]
    result = run_script("sprig_ppo_atari.py", *flags, "--leader-utility", leader_utility, cwd=tmp_path)
    (run_dir,) = run_dirs(tmp_path)
    scalars = read_scalars(run_dir)
    implicit = {"sprig/implicit_grad_norm", "sprig/implicit_direct_ratio", "sprig/cg_residual"}
    assert CLEANRL_TAGS | SPRIG_TAGS | implicit == {
        tag for tag in scalars if tag.split("/")[0] in ("charts", "losses", "sprig")
    }
    for tag in implicit:
        assert [step for step, _ in scalars[tag]] == [128, 256]
        assert all(value >= 0 for _, value in scalars[tag])
    assert "iter 2/2 | step 256 | SPS" in result.stdout
