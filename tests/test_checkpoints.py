"""Checkpoints, resume, the divergence guard and evaluation, in both scripts, run as a user runs them."""

import glob
import importlib
import os
import re
import shutil
import signal
import subprocess

import numpy as np
import pytest
import torch
from helpers import (
    TINY_RUN,
    parse_args_stops_with,
    read_scalars,
    run_dirs,
    run_main,
    run_script,
    script_command,
    script_environment,
)

SCRIPTS = ["ppo_atari.py", "sprig_ppo_atari.py"]
ITERATIONS = 6
RUN = TINY_RUN + ["--total-timesteps", 128 * ITERATIONS, "--checkpoint-every", 1]


def train_killed_at(script, iteration, cwd, *flags, signum=signal.SIGTERM, whole_group=False, again=False):
    """Start a run, send it `signum` once it has printed `iteration` (with whole_group, to its whole process group,
    as Ctrl-C in a terminal does; with again, once more when it says it is stopping, as a Slurm job's shell passes on
    the SIGTERM Slurm sent every process of the job), and return the finished process's exit code and its output."""
    process = subprocess.Popen(
        script_command(script, *RUN, "--exp-name", "killed", *flags),
        cwd=cwd,
        env=script_environment(),  # as the uninterrupted run's and the resume's: same threads, same float sums
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=whole_group,
    )
    lines, signals = [], 0
    for line in process.stdout:
        lines.append(line)
        if line.startswith(f"iter {iteration}/") or (again and line.startswith("stopping: ")):
            os.killpg(process.pid, signum) if whole_group else process.send_signal(signum)
            signals += 1
            if signals == (2 if again else 1):
                break
    lines += process.stdout.readlines()
    return process.wait(timeout=300), "".join(lines)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """scalars(script): what RUN logs left alone, its envs stepped in this process; the killed, resumed and paused runs
    must reproduce it. Each script's run is made once, when first asked for."""
    runs = {}

    def scalars(script):
        if script not in runs:
            cwd = tmp_path_factory.mktemp("uninterrupted")
            run_script(script, *RUN, "--exp-name", "whole", "--no-async-envs", cwd=cwd)
            runs[script] = read_scalars(run_dirs(cwd)[0])
        return runs[script]

    return scalars


# Each script with its envs stepped in this process (sync); ppo_atari.py also with them in subprocesses (async). How
# envs step, and how their state is saved and restored, is the same code in both scripts (tests/test_twins.py).
KILLED_RUNS = [("ppo_atari.py", "sync"), ("ppo_atari.py", "async"), ("sprig_ppo_atari.py", "sync")]


@pytest.fixture(scope="module", params=KILLED_RUNS, ids="-".join)
def kill_and_resume(request, tmp_path_factory, uninterrupted):
    """The run of `uninterrupted` killed with SIGTERM after iteration 2 (and once more as it stops) then resumed, its
    envs stepped here (sync) or in subprocesses (async)."""
    (script, envs), cwd = request.param, tmp_path_factory.mktemp("resume")
    envs_flag = "--async-envs" if envs == "async" else "--no-async-envs"
    exit_code, killed_output = train_killed_at(script, 2, cwd, envs_flag, again=True)
    (checkpoint,) = glob.glob(os.path.join(cwd, "runs", "*__killed__*", "checkpoint.pt"))
    resumed = run_script(script, "--resume", os.path.relpath(checkpoint, cwd), envs_flag, cwd=cwd)
    killed = read_scalars(glob.glob(os.path.join(cwd, "runs", "*__killed__*"))[0])
    return {
        "cwd": cwd,
        "exit": exit_code,
        "killed": killed_output,
        "resumed": resumed.stdout,
        "whole_scalars": uninterrupted(script),
        "scalars": killed,
    }


def test_sigterm_even_twice_writes_a_checkpoint_exits_3_and_says_how_to_resume(kill_and_resume):
    assert kill_and_resume["exit"] == 3, kill_and_resume["killed"]  # interrupted, with its checkpoint
    assert kill_and_resume["killed"].count("stopping: ") == 1
    assert re.search(r"interrupted at step \d+; resume with: python \S+ --resume \S+checkpoint\.pt", kill_and_resume["killed"])
    assert f"iter {ITERATIONS}/" not in kill_and_resume["killed"]  # it really stopped mid-way


def test_ctrl_c_to_the_whole_process_group_checkpoints_a_run_with_subprocess_envs(tmp_path):
    """The env subprocesses sit in a group of their own: the terminal's SIGINT reaches only the training process."""
    exit_code, output = train_killed_at("ppo_atari.py", 2, tmp_path, "--async-envs", signum=signal.SIGINT, whole_group=True)
    assert exit_code == 3, output
    assert "Traceback" not in output and "interrupted at step" in output
    assert glob.glob(os.path.join(tmp_path, "runs", "*__killed__*", "checkpoint.pt"))


def test_resumed_run_reaches_exactly_total_timesteps_with_strictly_increasing_steps(kill_and_resume):
    assert re.search(r"resumed from \S+ at iteration [2-5], step \d+", kill_and_resume["resumed"])
    for tag, points in kill_and_resume["scalars"].items():
        steps = [step for step, _ in points]
        assert steps == sorted(set(steps)), f"{tag} logged a step twice or out of order: {steps}"
    losses = kill_and_resume["scalars"]["losses/value_loss"]
    assert [step for step, _ in losses] == [128 * i for i in range(1, ITERATIONS + 1)]


def test_the_resumed_run_continues_in_the_killed_runs_directory(kill_and_resume):
    names = sorted(os.path.basename(path).split("__")[1] for path in run_dirs(kill_and_resume["cwd"]))
    assert names == ["killed"]  # no new directory


def test_losses_after_the_resume_equal_the_uninterrupted_runs(kill_and_resume):
    whole, resumed = kill_and_resume["whole_scalars"], kill_and_resume["scalars"]
    for tag in ("losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/approx_kl", "charts/learning_rate"):
        assert resumed[tag] == whole[tag], tag  # exact: same weights, optimiser, RNGs and emulator states
    assert resumed.get("charts/episodic_return") == whole.get("charts/episodic_return")


@pytest.mark.parametrize("script", SCRIPTS)
def test_stop_at_step_pauses_on_the_full_schedule_and_resuming_goes_on_as_the_uninterrupted_run(
    script, tmp_path, uninterrupted
):
    flags = [*RUN, "--no-async-envs", "--exp-name", "paused"]
    paused = run_script(script, *flags, "--stop-at-step", 200, cwd=tmp_path, check=False)
    assert paused.returncode == 4, paused.stdout + paused.stderr  # paused, with its checkpoint
    assert re.search(
        r"^paused at step 256 \(--stop-at-step 200\); go on with: python \S+ --resume \S+checkpoint\.pt", paused.stdout, re.M
    )
    assert "iter 3/" not in paused.stdout and "ETA" in paused.stdout
    (checkpoint,) = glob.glob(os.path.join(tmp_path, "runs", "*__paused__*", "checkpoint.pt"))
    again = run_script(script, "--resume", checkpoint, "--stop-at-step", 256, cwd=tmp_path, check=False)  # no step
    assert again.returncode == 4 and "paused at step 256" in again.stdout and "iter " not in again.stdout
    run_script(script, "--resume", checkpoint, cwd=tmp_path)  # no --stop-at-step: to the end of the schedule
    whole, (grown_dir,) = uninterrupted(script), run_dirs(tmp_path)
    for tag in ("losses/value_loss", "losses/policy_loss", "losses/entropy", "charts/learning_rate"):
        assert read_scalars(grown_dir)[tag] == whole[tag], tag  # the rate annealed over all 6 iterations, not over 2


@pytest.fixture(scope="module")
def ppo_checkpoint(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("checkpoint")
    run_script("ppo_atari.py", *TINY_RUN, "--total-timesteps", 128, "--checkpoint-every", 1, "--save-model", cwd=cwd)
    (run_dir,) = run_dirs(cwd)
    return {
        "cwd": cwd,
        "checkpoint": os.path.join(run_dir, "checkpoint.pt"),
        "model": glob.glob(f"{run_dir}/*.cleanrl_model")[0],
    }


def assert_one_line_error(result, *fragments):
    """`result`: a finished run's CompletedProcess, or the message parse_args stopped with in this process."""
    if isinstance(result, str):
        lines = result.strip().splitlines()
    else:
        assert result.returncode != 0
        assert "Traceback" not in result.stderr, result.stderr
        banner = ("A.L.E: Arcade Learning Environment", "[Powered by Stella]")  # ale-py's, once an emulator starts
        lines = [line for line in result.stderr.strip().splitlines() if not line.startswith(banner)]
    assert len(lines) == 1 and lines[0].startswith("error: "), result
    for fragment in fragments:
        assert fragment in lines[0]


def test_checkpoint_holds_the_full_training_state_and_loads_with_weights_only(ppo_checkpoint):
    checkpoint = torch.load(ppo_checkpoint["checkpoint"], weights_only=True)
    assert checkpoint["script"] == "ppo_atari.py"
    assert (checkpoint["iteration"], checkpoint["global_step"]) == (1, 128)
    assert {"agent", "optimizer", "rng", "envs", "args", "next_obs"} <= set(checkpoint)
    assert set(checkpoint["rng"]) >= {"python", "numpy", "torch"}
    assert len(checkpoint["envs"]) == 2 and checkpoint["args"]["num_envs"] == 2
    assert not glob.glob(os.path.dirname(ppo_checkpoint["checkpoint"]) + "/*.tmp")  # written via rename


def test_a_ppo_checkpoint_given_to_sprig_is_one_clear_line(ppo_checkpoint, monkeypatch):
    flags = ["--resume", ppo_checkpoint["checkpoint"]]
    result = parse_args_stops_with("sprig_ppo_atari.py", *flags, cwd=ppo_checkpoint["cwd"], monkeypatch=monkeypatch)
    assert_one_line_error(result, "is a checkpoint of ppo_atari.py, not of sprig_ppo_atari.py")


def test_a_truncated_checkpoint_is_one_clear_line_and_is_left_as_it_was(ppo_checkpoint, tmp_path):
    truncated = tmp_path / "checkpoint.pt"
    data = open(ppo_checkpoint["checkpoint"], "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    result = run_script("ppo_atari.py", "--resume", truncated, cwd=tmp_path, check=False)
    assert_one_line_error(result, "--resume: cannot read", "truncated")
    assert truncated.read_bytes() == data[: len(data) // 2]
    assert not os.path.exists(tmp_path / "runs")  # nothing started


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--learning-rate", "1e-3"], "--learning-rate (checkpoint 0.00025, now 0.001)"),
        (["--num-envs", "4", "--seed", "2"], "--seed (checkpoint 1, now 2)"),
    ],
)
def test_resuming_with_flags_that_change_the_algorithm_names_them(ppo_checkpoint, flags, named, monkeypatch):
    flags = ["--resume", ppo_checkpoint["checkpoint"], *flags]
    result = parse_args_stops_with("ppo_atari.py", *flags, cwd=ppo_checkpoint["cwd"], monkeypatch=monkeypatch)
    assert_one_line_error(result, "differ from the checkpoint", named)


def test_resuming_sprig_with_the_other_leader_utility_or_gradient_is_refused_and_older_checkpoints_mean_pg_direct(
    tmp_path, monkeypatch
):
    run_script("sprig_ppo_atari.py", *TINY_RUN, "--total-timesteps", 128, "--checkpoint-every", 1, cwd=tmp_path)
    (run_dir,) = run_dirs(tmp_path)
    path = os.path.join(run_dir, "checkpoint.pt")

    def resume_with(*flags):
        return parse_args_stops_with("sprig_ppo_atari.py", "--resume", path, *flags, cwd=tmp_path, monkeypatch=monkeypatch)

    assert_one_line_error(resume_with("--leader-utility", "pg"), "--leader-utility (checkpoint follower, now pg)")
    assert_one_line_error(resume_with("--leader-gradient", "implicit"), "--leader-gradient (checkpoint direct, now implicit)")
    assert_one_line_error(resume_with("--update", "joint"), "--update (checkpoint stackelberg, now joint)")
    # A checkpoint written before the flags existed trained with Algorithm 1's printed term and its direct gradient.
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["args"]["leader_utility"], checkpoint["args"]["leader_gradient"]
    torch.save(checkpoint, path)
    assert_one_line_error(resume_with("--leader-utility", "follower"), "--leader-utility (checkpoint pg, now follower)")
    assert_one_line_error(resume_with("--leader-gradient", "implicit"), "--leader-gradient (checkpoint direct, now implicit)")


def test_a_missing_or_foreign_file_is_one_clear_line(ppo_checkpoint, tmp_path, monkeypatch):
    def stops_with(*flags):
        return parse_args_stops_with("ppo_atari.py", *flags, cwd=tmp_path, monkeypatch=monkeypatch)

    assert_one_line_error(stops_with("--resume", tmp_path / "nope.pt"), "no such file")
    assert_one_line_error(stops_with("--resume", ppo_checkpoint["model"]), "is not a training checkpoint")
    foreign = tmp_path / "notes.pt"
    foreign.write_text("hello")
    assert_one_line_error(stops_with("--eval-checkpoint", foreign, "--eval-episodes", 1), "--eval-checkpoint: cannot read")


def test_a_network_of_another_shape_is_one_clear_line(ppo_checkpoint, tmp_path, monkeypatch):
    """A file of an older version whose tensors have other shapes (SPRIG's 1x1 convolutions became nn.Linear)."""
    checkpoint = torch.load(ppo_checkpoint["checkpoint"], weights_only=True)
    checkpoint["agent"]["critic.weight"] = checkpoint["agent"]["critic.weight"][:, :, None, None]
    torch.save(checkpoint, tmp_path / "checkpoint.pt")
    torch.save(checkpoint["agent"], tmp_path / "old.cleanrl_model")

    def stops_with(*flags):
        return parse_args_stops_with("ppo_atari.py", *flags, cwd=tmp_path, monkeypatch=monkeypatch)

    assert_one_line_error(stops_with("--resume", tmp_path / "checkpoint.pt"), "--resume:", "holds a network of another shape")
    result = stops_with("--eval-checkpoint", tmp_path / "old.cleanrl_model", "--eval-episodes", 1)
    assert_one_line_error(result, "--eval-checkpoint:", "is not a model of this version of ppo_atari.py")
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize(
    "module_name, step, parameter",
    [("ppo_atari", "ppo_step", "network.0.weight"), ("sprig_ppo_atari", "follower_step", "perception.convs.0.weight")],
)
def test_an_injected_nan_stops_the_run_naming_iteration_and_quantity_and_keeps_the_last_checkpoint(
    module_name, step, parameter, tmp_path, monkeypatch, capsys
):
    """The script's main() in this process, its update step wrapped to poison a parameter at iteration 2's end."""
    module = importlib.import_module(module_name)
    real_step, calls = getattr(module, step), []

    def step_then_poison_iteration_2(agent, *rest):
        stats = real_step(agent, *rest)
        calls.append(step)
        if len(calls) == 2 * 4:  # TINY_RUN: 2 epochs x 2 minibatches per iteration
            with torch.no_grad():
                next(agent.parameters()).fill_(float("nan"))
        return stats

    monkeypatch.setattr(module, step, step_then_poison_iteration_2)
    with pytest.raises(SystemExit) as stopped:
        run_main(module, *TINY_RUN, "--total-timesteps", 384, "--checkpoint-every", 1, cwd=tmp_path, monkeypatch=monkeypatch)
    message = str(stopped.value.code)
    assert message.startswith(f"error: divergence at iteration 2: parameter {parameter} is nan")
    assert "the last good checkpoint is runs/" in message and message.endswith("checkpoint.pt")
    assert "iter 2/" not in capsys.readouterr().out  # nothing of the diverged iteration is logged
    (run_dir,) = run_dirs(tmp_path)
    checkpoint = torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True)
    assert checkpoint["iteration"] == 1
    assert all(torch.isfinite(value).all() for value in checkpoint["agent"].values())
    assert [step for step, _ in read_scalars(run_dir)["losses/value_loss"]] == [128]


def test_eval_only_plays_the_requested_number_of_games_and_logs_their_scores(ppo_checkpoint, tmp_path):
    result = run_script(
        "ppo_atari.py", "--eval-checkpoint", ppo_checkpoint["model"], "--eval-episodes", 2, "--no-cuda", cwd=tmp_path
    )
    (run_dir,) = run_dirs(tmp_path)
    scalars = read_scalars(run_dir)
    returns = [value for _, value in scalars["eval/episodic_return"]]
    assert [step for step, _ in scalars["eval/episodic_return"]] == [0, 1]
    assert "losses/value_loss" not in scalars  # no training
    assert f"eval: {np.mean(returns):.1f} ± {np.std(returns):.1f} over 2 episodes" in result.stdout


def test_evaluation_games_last_until_game_over_and_report_the_raw_score(monkeypatch):
    """Each evaluated episode is a whole game: it ends with no lives left, not at the first life lost."""
    import ppo_atari

    finished_episodes, lives_at_end = ppo_atari.finished_episodes, []

    def spy(infos):
        ended = finished_episodes(infos)
        lives_at_end.extend(infos["final_info"]["lives"][i] for i, _, _ in ended)
        return ended

    monkeypatch.setattr(ppo_atari, "finished_episodes", spy)
    torch.manual_seed(0)
    returns = ppo_atari.evaluate(ppo_atari.Agent(9), ppo_atari.Args(), torch.device("cpu"), 1)
    assert len(returns) == 1 and lives_at_end == [0]


def test_a_checkpoint_resumed_from_its_own_directory_writes_there(ppo_checkpoint, tmp_path):
    shutil.copy(ppo_checkpoint["checkpoint"], tmp_path / "checkpoint.pt")  # a finished run: nothing left to train
    result = run_script("ppo_atari.py", "--resume", "checkpoint.pt", "--save-model", cwd=tmp_path)
    assert "model saved to ./ppo_atari.cleanrl_model" in result.stdout
    assert (tmp_path / "ppo_atari.cleanrl_model").exists() and not (tmp_path / "runs").exists()
