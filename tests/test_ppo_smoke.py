"""ppo_atari.py end to end: a couple of tiny updates, its TensorBoard tags, and run-to-run determinism."""

import pytest
from helpers import TINY_RUN, read_scalars, run_dirs, run_script

CLEANRL_TAGS = {
    "charts/learning_rate",
    "charts/SPS",
    "losses/value_loss",
    "losses/policy_loss",
    "losses/entropy",
    "losses/old_approx_kl",
    "losses/approx_kl",
    "losses/clipfrac",
    "losses/explained_variance",
}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same tiny run twice (same seed, --torch-deterministic), each in its own directory."""
    results = []
    for name in ("first", "second"):
        cwd = tmp_path_factory.mktemp(name)
        flags = [*TINY_RUN, "--total-timesteps", "384", "--max-episode-steps", "40", "--seed", "3"]
        result = run_script("ppo_atari.py", *flags, cwd=cwd)
        (run_dir,) = run_dirs(cwd)
        results.append((result, read_scalars(run_dir)))
    return results


def test_smoke_run_logs_cleanrl_tags_and_episodes(two_runs):
    result, scalars = two_runs[0]
    assert CLEANRL_TAGS <= set(scalars)
    assert [step for step, _ in scalars["charts/SPS"]] == [128, 256, 384]
    # 40-step episodes in a 3 x 64-step rollout: every env finishes at least 4 (truncated) episodes
    assert len(scalars["charts/episodic_return"]) >= 8
    assert len(scalars["charts/episodic_length"]) == len(scalars["charts/episodic_return"])
    assert "iter 3/3 | step 384 | SPS" in result.stdout


def test_same_seed_gives_identical_losses(two_runs):
    (_, first), (_, second) = two_runs
    for tag in ("losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/approx_kl"):
        assert first[tag] == second[tag], tag
    assert first["charts/episodic_return"] == second["charts/episodic_return"]
