"""Shared by the test files: run a training script as a user would (or only its command-line check, or its main(), in
this process), read back its TensorBoard scalars, tell whether a process still lives."""

import fcntl
import glob
import importlib
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A couple of tiny iterations: 2 envs x 64 steps, 2 minibatches, 2 epochs.
TINY_RUN = ["--num-envs", "2", "--num-steps", "64", "--num-minibatches", "2", "--update-epochs", "2", "--no-cuda"]


def script_environment():
    """The environment the scripts run in: torch's thread count fixed (2 unless OMP_NUM_THREADS says otherwise), since
    float sums, and so bit-for-bit comparisons between runs, depend on it."""
    return dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))


def script_command(script, *flags):
    """The command line that runs a top-level script of the repo with this python."""
    return [sys.executable, os.path.join(REPO, script), *map(str, flags)]


def run_script(script, *flags, cwd, check=True, timeout=600):
    """Run a top-level script of the repo from `cwd`, the way a user runs it; return the CompletedProcess."""
    result = subprocess.run(
        script_command(script, *flags),
        cwd=cwd,
        env=script_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed with exit {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def parse_args_stops_with(script, *flags, cwd, monkeypatch):
    """The message a script's parse_args() stops with on this command line, called in this process from `cwd`. main()
    starts with parse_args(), so this is the one line the script, run, prints to stderr before it exits with 1
    (tests/test_cli_errors.py runs a few mistakes both ways), in milliseconds instead of the seconds a run spends
    importing torch."""
    module = importlib.import_module(script[: -len(".py")])
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [script, *map(str, flags)])
    with pytest.raises(SystemExit) as stop:
        module.parse_args()
    return stop.value.code


def run_main(module, *flags, cwd, monkeypatch):
    """Call a training script's main() in this process, from `cwd`, with this command line: for tests that watch the loop
    through spies on the module's functions (main() looks each up in the module when it calls it)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *map(str, flags)])
    module.main()


def run_dirs(cwd):
    return sorted(glob.glob(os.path.join(cwd, "runs", "*")))


def read_scalars(run_dir):
    """{tag: [(step, value), ...]} of every scalar a run logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # only the tests that read runs

    accumulator = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def pid_alive(pid):
    """True if the process exists and is not a zombie (orphans may wait a while to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def is_locked(run_directory):
    """Whether a live process holds the run lock of a benchmark.sh run directory (an flock on its .benchmark.lock)."""
    with open(os.path.join(run_directory, ".benchmark.lock")) as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False
