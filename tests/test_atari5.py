"""The Atari-5 games (benchmark.sh --games atari5) train in both scripts, and a run on one of them resumes exactly.

The five games differ from BeamRider where the scripts could trip: BattleZone and DoubleDunk act with all 18 actions,
every one of the five needs FIRE to start, and their episodes end in other ways. Each run here is one tiny iteration
with episodes cut at 20 steps, so every env ends an episode (and resets, pressing FIRE again) within it.
"""

import glob
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from helpers import read_scalars, run_dirs, run_script
from test_checkpoints import ITERATIONS, RUN, train_killed_at

ATARI5_ACTIONS = {
    "BattleZoneNoFrameskip-v4": 18,
    "DoubleDunkNoFrameskip-v4": 18,
    "NameThisGameNoFrameskip-v4": 6,
    "PhoenixNoFrameskip-v4": 8,
    "QbertNoFrameskip-v4": 6,
}
"""each game's minimal action set, the one the scripts' policies choose from"""

SCRIPTS = ["ppo_atari.py", "sprig_ppo_atari.py"]
ONE_ITERATION = ["--num-envs", 2, "--num-steps", 32, "--num-minibatches", 2, "--update-epochs", 1, "--no-cuda"]
ONE_ITERATION += ["--total-timesteps", 64, "--max-episode-steps", 20, "--checkpoint-every", 1, "--no-async-envs"]
WORKERS = 2


@pytest.fixture(scope="module")
def atari5_runs(tmp_path_factory):
    """{(script, env id): its run directory}: one iteration of each script on each game, WORKERS runs at a time, the
    cores split between them."""
    jobs = [(script, env_id, tmp_path_factory.mktemp("atari5")) for script in SCRIPTS for env_id in ATARI5_ACTIONS]
    threads = str(max(1, len(os.sched_getaffinity(0)) // WORKERS))
    with pytest.MonkeyPatch.context() as patch, ThreadPoolExecutor(WORKERS) as pool:
        patch.setenv("OMP_NUM_THREADS", threads)  # read by run_script when each run starts
        list(pool.map(lambda job: run_script(job[0], *ONE_ITERATION, "--env-id", job[1], cwd=job[2]), jobs))
    return {(script, env_id): run_dirs(cwd)[0] for script, env_id, cwd in jobs}


@pytest.mark.parametrize("env_id", ATARI5_ACTIONS)
@pytest.mark.parametrize("script", SCRIPTS)
def test_one_iteration_on_each_game_ends_episodes_updates_and_checkpoints_a_policy_over_its_actions(
    atari5_runs, script, env_id
):
    run_dir = atari5_runs[(script, env_id)]
    scalars = read_scalars(run_dir)
    assert len(scalars["charts/episodic_return"]) >= 2  # each of the 2 envs ended an episode, cut at 20 steps
    assert [step for step, _ in scalars["losses/value_loss"]] == [64]
    checkpoint = torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True)
    assert checkpoint["agent"]["actor.weight"].shape[0] == ATARI5_ACTIONS[env_id]


def test_a_killed_run_on_an_18_action_game_resumes_to_the_uninterrupted_runs_losses(tmp_path, monkeypatch):
    """As tests/test_checkpoints.py does on BeamRider: ppo_atari.py on DoubleDunk, killed after iteration 2 and
    resumed, logs what the uninterrupted run logs, episodes (cut at 50 steps) ending on both sides of the resume. The
    uninterrupted run and the killed one train side by side, each on its share of the cores, the resume on the same."""
    game = ["--env-id", "DoubleDunkNoFrameskip-v4", "--max-episode-steps", 50, "--no-async-envs"]
    monkeypatch.setenv("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // WORKERS)))
    with ThreadPoolExecutor(WORKERS) as pool:
        whole_run = pool.submit(run_script, "ppo_atari.py", *RUN, "--exp-name", "whole", *game, cwd=tmp_path)
        exit_code, output = pool.submit(train_killed_at, "ppo_atari.py", 2, tmp_path, *game).result()
        whole_run.result()
    assert exit_code == 3 and "interrupted at step" in output, output  # 3: stopped with a checkpoint
    (checkpoint,) = glob.glob(os.path.join(tmp_path, "runs", "*__killed__*", "checkpoint.pt"))
    run_script("ppo_atari.py", "--resume", os.path.relpath(checkpoint, tmp_path), "--no-async-envs", cwd=tmp_path)
    whole, resumed = (
        read_scalars(glob.glob(os.path.join(tmp_path, "runs", f"*__{name}__*"))[0]) for name in ("whole", "killed")
    )
    assert [step for step, _ in resumed["losses/value_loss"]] == [128 * i for i in range(1, ITERATIONS + 1)]
    for tag in ("losses/value_loss", "losses/policy_loss", "losses/entropy", "charts/episodic_return"):
        assert resumed[tag] == whole[tag], tag
    assert len(whole["charts/episodic_return"]) >= 2 * ITERATIONS
