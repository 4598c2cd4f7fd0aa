"""Bad input stops with one clear line before any environment, network or log directory is made.

Each script's main() starts with parse_args(), which reads and checks the command line and stops with
SystemExit("error: ...") at the first mistake: Python prints that message to stderr and exits with 1. A few mistakes
are given to the scripts as a user gives them, to show that whole path; the rest call parse_args in this process.
"""

import importlib.util
import os

import pytest
from helpers import TINY_RUN, parse_args_stops_with, run_script

SCRIPTS = ["ppo_atari.py", "sprig_ppo_atari.py"]

BAD_INPUTS = [
    (
        ["--env-id", "BeamRiderNoFrameskip-v9"],
        "unknown --env-id 'BeamRiderNoFrameskip-v9'; did you mean BeamRiderNoFrameskip-v4",
    ),
    (
        ["--num-envs", "3", "--num-steps", "5"],
        "batch size 15 (--num-envs 3 x --num-steps 5) is not divisible by --num-minibatches 4",
    ),
    (["--num-envs", "0"], "--num-envs must be positive, got 0"),
    (["--update-epochs", "-1"], "--update-epochs must be positive, got -1"),
    (["--ent-coef", "-0.01"], "--ent-coef must be non-negative, got -0.01"),
    (["--vf-coef", "-1"], "--vf-coef must be non-negative, got -1.0"),
    (["--learning-rate", "0"], "--learning-rate must be positive, got 0.0"),
    (["--gamma", "1.5"], "--gamma must be in [0, 1], got 1.5"),
    (["--total-timesteps", "100"], "--total-timesteps 100 is smaller than one batch (1024 steps)"),
    (["--max-episode-steps", "0"], "--max-episode-steps must be positive, got 0"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be non-negative, got -1"),
    (["--eval-episodes", "-2"], "--eval-episodes must be non-negative, got -2"),
    (["--eval-checkpoint", "model.pt"], "--eval-checkpoint needs --eval-episodes N"),
    (["--env-id", "CartPole-v1"], "--env-id CartPole-v1 is not an Atari game"),
    (["--repeat-action-probability", "1.5"], "--repeat-action-probability must be in [0, 1], got 1.5"),
    (["--num-envs", "eight"], "Error parsing --num-envs: invalid literal for int() with base 10: 'eight'"),
    (["--num-env", "8"], "Unrecognized options: --num-env"),
    (["--stop-at-step", "0"], "--stop-at-step must be positive, got 0"),
]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("flags, message", BAD_INPUTS, ids=[flags[0] for flags, _ in BAD_INPUTS])
def test_bad_input_stops_with_one_clear_line(script, flags, message, tmp_path, monkeypatch):
    said = parse_args_stops_with(script, *flags, cwd=tmp_path, monkeypatch=monkeypatch)
    assert isinstance(said, str) and "\n" not in said.strip(), said  # a message (exit 1), one line
    assert said.startswith(f"error: {message}")
    assert os.listdir(tmp_path) == []  # nothing written: no runs/, no videos/


# One mistake that tyro finds and one that check_args finds, each given to the scripts as a user gives it.
RUN_AS_A_USER = [case for case in BAD_INPUTS if case[0] in (["--num-envs", "eight"], ["--num-envs", "0"])]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("flags, message", RUN_AS_A_USER, ids=[" ".join(flags) for flags, _ in RUN_AS_A_USER])
def test_a_script_given_bad_input_exits_1_with_one_line_on_stderr_and_writes_nothing(script, flags, message, tmp_path):
    result = run_script(script, *flags, cwd=tmp_path, check=False)
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {message}")
    assert os.listdir(tmp_path) == []


SPRIG_BAD_INPUTS = [
    (["--alpha-coop", "1.5"], "--alpha-coop must be in [0, 1], got 1.5"),
    (["--attn-cost-coef", "-1e-4"], "--attn-cost-coef must be non-negative, got -0.0001"),
    (["--leader-gradient", "total"], "invalid choice 'total' for argument '--leader-gradient'. Expected one of"),
    (["--implicit-damping", "-1"], "--implicit-damping must be non-negative, got -1.0"),
    (["--implicit-cg-iters", "0"], "--implicit-cg-iters must be positive, got 0"),
    (["--implicit-max-ratio", "-0.5"], "--implicit-max-ratio must be non-negative, got -0.5"),
    (["--update", "both"], "invalid choice 'both' for argument '--update'. Expected one of"),
    (
        ["--update", "joint", "--leader-utility", "pg", "--implicit-cg-iters", "3"],
        "--update joint has no leader stage, so --leader-utility, --implicit-cg-iters would change nothing",
    ),
    (["--update", "joint", "--alpha-coop", "0.5"], "--update joint has no leader stage, so --alpha-coop would change"),
    (["--perception", "cnn"], "invalid choice 'cnn' for argument '--perception'. Expected one of"),
    (
        ["--perception", "nature", "--attn-cost-coef", "1e-3"],
        "--perception nature has no attention masks to price, so --attn-cost-coef would change nothing",
    ),
    (["--perception", "nature", "--log-attention-every", "5"], "--perception nature has no attention masks to draw"),
]


@pytest.mark.parametrize("flags, message", SPRIG_BAD_INPUTS, ids=[flags[0] for flags, _ in SPRIG_BAD_INPUTS])
def test_sprig_rejects_bad_game_coefficients(flags, message, tmp_path, monkeypatch):
    test_bad_input_stops_with_one_clear_line("sprig_ppo_atari.py", flags, message, tmp_path, monkeypatch)


@pytest.mark.skipif(importlib.util.find_spec("moviepy") is not None, reason="moviepy is installed here")
@pytest.mark.parametrize("script", SCRIPTS)
def test_capture_video_without_moviepy_says_what_to_install(script, tmp_path, monkeypatch):
    said = parse_args_stops_with(script, "--capture-video", cwd=tmp_path, monkeypatch=monkeypatch)
    assert said == "error: --capture-video needs moviepy: pip install moviepy"


@pytest.mark.parametrize("script", SCRIPTS)
def test_cuda_without_a_gpu_falls_back_to_the_cpu_with_a_warning(script, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    flags = [flag for flag in TINY_RUN if flag != "--no-cuda"]
    result = run_script(script, *flags, "--cuda", "--total-timesteps", "128", cwd=tmp_path)
    assert "warning: --cuda was requested but CUDA is not available; running on the CPU" in result.stdout
