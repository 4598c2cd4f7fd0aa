"""The benchmark behind `./benchmark.sh` (see its --help).

It runs ppo_atari.py or sprig_ppo_atari.py once for every (method x env x seed), each run in a directory of its own,
on this machine or as a Slurm job array, and then plots the results. A run that stops can be resumed, and a lock keeps
two invocations from running it at once. The methods, presets and game sets come from methods.py.

The file reads top to bottom:
- Run: one run's record. It reads its own state (new, done, paused, ...) from its directory.
- run_one: runs one run under an fcntl lock and writes how it ended back into its directory.
- The command line (argparse) and the Plan it makes: the checked options and the list of runs.
- The modes: this machine (a thread pool of --workers, sharing a GPU through NVIDIA MPS), --dry-run, --slurm (sbatch
  scripts whose tasks call back into this file), and --sps with the cost estimate it feeds.

Standard library only, so that --help and --dry-run work before the training scripts' environment is installed.
"""

from __future__ import annotations  # annotations as text: `int | None` and `list[str]` on Python 3.8, as benchmark.sh says

import argparse
import contextlib
import csv
import fcntl
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from typing import NamedTuple

from methods import GAME_SETS, METHODS, PRESETS, SPRIG, method_named, methods_table_mistake

REPO_DIR = os.path.dirname(os.path.abspath(__file__))


def repo_file(name: str) -> str:
    """The path of NAME beside this file: a training script, plot_results.py, this file itself."""
    return os.path.join(REPO_DIR, name)


# --- A run: one record, and its state on disk. Each run has the directory OUT/PRESET/ENV/NAME/seedSEED/ to itself.
# It holds the script's runs/ (TensorBoard logs, checkpoint.pt), log.txt and command.txt, and three marker files:
# `started` holds the run's command line (what it computes), `done` the same line once the run has finished, and
# `paused` the step at which it paused at --stop-at-step.
# The machinery flags change how a run goes, not what it learns. A run given other machinery flags is the same run, and
# its script resumes it from its checkpoint. They are the scripts' RESUME_FREE_FLAGS; tests/test_benchmark.py keeps the
# two lists in step.
MACHINERY_SWITCHES = ("async-envs", "cudagraphs", "cuda", "track", "capture-video", "save-model")  # and their --no-
MACHINERY_FLAGS = {
    *("--checkpoint-every", "--stop-at-step", "--resume", "--eval-episodes", "--wandb-project-name", "--wandb-entity"),
    *(f"--{prefix}{name}" for prefix in ("", "no-") for name in MACHINERY_SWITCHES),
}
# The flags benchmark.py sets for each run, and the option of benchmark.sh that each comes from.
PER_RUN_FLAGS = {
    "--env-id": "--env-ids",
    "--seed": "--seeds",
    "--exp-name": "--methods",
    "--total-timesteps": "--total-timesteps",
}
LOCK_FILES = {".benchmark.lock", ".lock"}  # the run's lock (and older versions' lock directory): not its output


def flag_groups(words) -> list[tuple[str, tuple[str, ...]]]:
    """Split a command line's WORDS into (flag, its values) pairs, as the scripts read them.

    `--x=1` is read as `--x 1` and `--x_y` as `--x-y`. A flag without values is a switch. Words before the first flag
    are the values of the flag ''."""
    groups: list[tuple[str, list[str]]] = []
    for word in words:
        if word.startswith("--"):
            name, equals, value = word.partition("=")
            groups.append((name.replace("_", "-"), [value] if equals else []))  # tyro takes --stop_at_step too
        elif groups:
            groups[-1][1].append(word)
        else:
            groups.append(("", [word]))
    return [(name, tuple(values)) for name, values in groups]


def last_value(words, flag: str, default: str) -> str:
    """The value a script takes for FLAG from WORDS: the last one given ('' for the flag given without a value), or
    DEFAULT where the flag is absent."""
    values = dict(flag_groups(words)).get(flag)
    if values is None:
        return default
    return values[-1] if values else ""


def split_machinery(words) -> tuple[list[str], list[str]]:
    """Split WORDS into two lists, each in its order: the flags that decide a run's results, and its MACHINERY_FLAGS."""
    results, machinery = [], []
    for name, values in flag_groups(words):
        if name in MACHINERY_FLAGS:
            machinery += [name, *values]
        else:
            results += [name, *values] if name else values
    return results, machinery


def signature(line: str) -> tuple:
    """What a run computes, read from the line in its `started` or `done` file (as any version wrote it).

    It is the script's name and the flags that decide the results, sorted, so that `--y 2 --x=1` matches `--x 1 --y 2`.
    A flag given twice keeps its last values, as the scripts do."""
    try:
        words = shlex.split(line)
    except ValueError:  # an unmatched quote: the words as they stand
        words = line.split()
    flags = dict(flag_groups(split_machinery(words[1:])[0]))
    return (os.path.basename(words[0]) if words else "", tuple(sorted(flags.items())))


@dataclass(frozen=True)
class Run:
    """One run of the matrix: what it computes (script and flags), how it goes (machinery), and where (directory)."""

    method: str  # its row of METHODS (sprig for a swept run)
    name: str  # its directory under ENV: the method, or sprig_FLAG=VALUE in a sweep
    env_id: str
    seed: int
    script: str  # the training script's path
    flags: tuple[str, ...]  # what it computes: env, seed, steps, then the method's, the preset's and those after --
    machinery: tuple[str, ...]  # how it goes: --checkpoint-every, --stop-at-step and the rest of MACHINERY_FLAGS
    stop_at_step: int | None
    directory: str  # OUT/PRESET/ENV/NAME/seedSEED, where it runs

    @property
    def label(self) -> str:
        return f"{self.name} {self.env_id} {self.seed}"

    @property
    def line(self) -> str:
        """What it computes, as `started` and `done` hold it: its script's file name, then its flags."""
        return shlex.join([os.path.basename(self.script), *self.flags])

    def command(self, python: str, resume: str | None = None) -> list[str]:
        return [python, self.script, *self.flags, *self.machinery, *(["--resume", resume] if resume else [])]

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def read(self, name: str) -> str | None:
        """The text of the file NAME in its directory, without trailing newlines; None if there is no such file."""
        try:
            with open(self.path(name)) as file:
                return file.read().rstrip("\n")
        except OSError:
            return None

    def write(self, name: str, text: str) -> None:
        with open(self.path(name), "w") as file:
            file.write(text + "\n")

    def conflict(self) -> str:
        """Why a run in the state conflict is not run, and what to do about it, in one line."""
        done, started = self.read("done"), self.read("started")
        if done is not None:
            earlier = f"finished with other flags ({done})"
        elif started is None:
            earlier = "holds a checkpoint of a run whose flags it does not say (no 'started' file)"
        else:
            earlier = f"holds a checkpoint of a run with other flags ({started})"
        return f"{self.directory} {earlier}; delete it or use another --out"

    def remove_output(self) -> None:
        """Remove everything in its directory but its lock."""
        for path in map(self.path, set(os.listdir(self.directory)) - LOCK_FILES):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)

    def checkpoint(self) -> str | None:
        """Its newest runs/*/checkpoint.pt, or None."""
        checkpoints = glob.glob(os.path.join(glob.escape(self.directory), "runs", "*", "checkpoint.pt"))
        return max(checkpoints, key=os.path.getmtime, default=None)

    def paused_at(self) -> int | None:
        paused = (self.read("paused") or "").strip()
        return int(paused) if paused.isdigit() else None

    def state(self) -> str:
        """Its state, read from its directory:

        - new: nothing there yet.
        - done: it finished with these flags.
        - conflict: it finished, or holds a checkpoint, with other flags. It is never removed here.
        - paused: it paused at its --stop-at-step (or later) with a checkpoint.
        - resume: it holds a checkpoint of a run started with these flags.
        - clean: it holds output but no checkpoint; the output is removed and the run started again.
        """
        if (done := self.read("done")) is not None:
            return "done" if not done.strip() or signature(done) == signature(self.line) else "conflict"
        started = self.read("started")
        if self.checkpoint():
            if started is None or signature(started) != signature(self.line):  # its script would refuse these flags
                return "conflict"
            paused, stop = self.paused_at(), self.stop_at_step
            return "paused" if paused is not None and stop is not None and paused >= stop else "resume"
        if os.path.isdir(self.directory) and set(os.listdir(self.directory)) - LOCK_FILES:
            return "clean"
        return "new"

    @classmethod
    def from_json(cls, text: str) -> Run:
        fields = json.loads(text)
        return cls(**{**fields, "flags": tuple(fields["flags"]), "machinery": tuple(fields["machinery"])})


# --- Running one run, on this machine or in a Slurm task. Its script's exit status says how it ended: 0, it finished
# (and is marked done); 3, a signal stopped it after it wrote its checkpoint (interrupted: the next invocation resumes
# it); 4, it paused at --stop-at-step with its checkpoint (paused); anything else, it failed.
OUTPUT = threading.Lock()  # one line at a time from the pool's threads


def thread_variables(threads: int) -> dict[str, str]:
    """The environment variables that give a run's torch THREADS threads (OpenMP's, and MKL's where it is the BLAS)."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def shell_line(directory: str, command: list[str], variables: dict) -> str:
    """COMMAND as a shell line to run by hand, from DIRECTORY with VARIABLES set (a run's command.txt, --dry-run)."""
    assignments = " ".join(f"{name}={shlex.quote(str(value))}" for name, value in variables.items())
    return f"cd {shlex.quote(directory)} && {assignments} {shlex.join(command)}"


def say(text: str, error: bool = False) -> None:
    """Print one line to stdout (stderr if ERROR), whole even when several runs end at once.

    Once the reader of a pipe has gone (`./benchmark.sh | head`), the lines are lost, not fatal: the runs go on, and
    their markers are still written."""
    stream = sys.stderr if error else sys.stdout
    with OUTPUT:
        try:
            print(text, file=stream, flush=True)
        except BrokenPipeError:  # from now on to /dev/null, for the runs' plots and Python's last flush too
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def slurm_job() -> str:
    """The Slurm job this process runs in, as squeue names it: ARRAYID_TASK in an array task, '-' outside Slurm."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID") or "-"


@contextlib.contextmanager
def run_lock(run: Run):
    """Lock RUN: an fcntl.flock on its .benchmark.lock, which then names its holder.

    Yields the lock's file descriptor, or None if another process holds the lock. The run's process inherits the
    descriptor, so the lock lasts while either process lives, and the kernel frees it once both have ended, however
    they end."""
    descriptor = os.open(run.path(".benchmark.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locked = True
    except BlockingIOError:  # another process holds it
        locked = False
    except OSError as error:  # a file system without locks (Lustre without -o flock)
        os.close(descriptor)
        raise OSError(error.errno, f"cannot lock {run.path('.benchmark.lock')}: {error.strerror}") from None
    try:
        if locked:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.uname().nodename} {os.getpid()} {slurm_job()}\n".encode())
        yield descriptor if locked else None
    finally:
        os.close(descriptor)


class Stopper:
    """How a signal handler stops the run that run_one is running.

    stop() sends SIGTERM to the run's process (or to its process group, where it has its own); the script then writes
    its checkpoint and exits 3. If stop() comes before the process has started, run_one does not start it."""

    def __init__(self, own_process_group: bool):
        self.own_process_group = own_process_group
        self.process: subprocess.Popen | None = None
        self.stopped = False

    def stop(self, signum: int = signal.SIGTERM) -> None:
        self.stopped = True
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):  # it has just ended
            if self.own_process_group:
                os.killpg(process.pid, signum)
            else:
                os.kill(process.pid, signum)


def run_one(run: Run, python: str, threads: int, stopper: Stopper, environment: dict[str, str] | None = None) -> str:
    """Run RUN unless it is done, with THREADS threads and ENVIRONMENT's variables, and return how it went: one of
    ENDED's statuses (ran, skipped, paused, locked, conflict, interrupted, failed)."""
    start = time.monotonic()
    os.makedirs(run.directory, exist_ok=True)
    with run_lock(run) as lock:
        if lock is None:
            holder = (run.read(".benchmark.lock") or "?").strip()
            say(f"{run.directory}: locked by another live run ({holder}); left to it")
            return "locked"
        state = run.state()
        if state == "done":
            return "skipped"
        if state == "paused":
            return "paused"
        if state == "conflict":
            say(f"error: {run.conflict()}", error=True)
            return "conflict"
        resume = run.checkpoint() if state == "resume" else None
        if resume:
            say(f"{run.directory}: resuming the unfinished earlier run from {resume}")
        elif state == "clean":
            say(
                f"{run.directory}: unfinished earlier run (no 'done' marker, no checkpoint): "
                "removing its partial output and restarting it"
            )
            run.remove_output()
        if stopper.stopped:  # asked to stop before it started: it does not start, and is resumed next time
            return "interrupted"
        returncode = start_and_wait(run, run.command(python, resume), threads, stopper, lock, environment or {})
        # Marked while the lock is held, so that no other invocation sees the run finished but not yet marked.
        if returncode == 0:
            run.write("done", run.line)
            return "ran"
        if returncode == 3:  # stopped by a signal after writing its checkpoint: not done, resumed next time
            return "interrupted"
        if returncode == 4 and run.stop_at_step is not None:  # paused with its checkpoint: goes on when asked for more
            run.write("paused", str(run.stop_at_step))
            return "paused"
        seconds = int(time.monotonic() - start)
        say(f"{run.directory}: FAILED (exit {returncode}) after {seconds} s; see {run.directory}/log.txt", error=True)
        return "failed"


def start_and_wait(run: Run, command: list[str], threads: int, stopper: Stopper, lock: int, environment) -> int:
    """Start the run (stdout and stderr appended to its log.txt, the lock's descriptor inherited), wait for it, and
    return its exit status as a shell says it (killed by signal N: 128 + N)."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(run.path("paused"))
    run.write("started", run.line)
    say(f"{run.directory}: started (log: {run.directory}/log.txt)")
    variables = {**thread_variables(threads), **environment}
    run.write("command.txt", shell_line(run.directory, command, variables))
    with open(run.path("log.txt"), "a") as log:
        try:
            stopper.process = subprocess.Popen(
                command,
                cwd=run.directory,
                env={**os.environ, **variables},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=stopper.own_process_group,
                pass_fds=(lock,),
            )
        except OSError as error:  # as `env` would say it, with its exit status
            log.write(f"benchmark.py: {command[0]}: {error.strerror}\n")
            return 127
        if stopper.stopped:  # a stop that came before the process was known
            stopper.stop()
        returncode = stopper.process.wait()
        stopper.process = None
    return 128 - returncode if returncode < 0 else returncode


# --- The command line, and the plan it makes: the run matrix, seed-major so that a benchmark stopped halfway has
# every method at the same number of seeds.
class Parser(argparse.ArgumentParser):
    def error(self, message):
        """Say a usage mistake in one line and exit 2, before anything is written (argparse's own prints the usage)."""
        message = re.sub(r"^argument (--[a-z-]+): ", r"\1: ", message)  # argparse's "argument --x: ..." as "--x: ..."
        say(f"error: {message} (see --help)", error=True)
        raise SystemExit(2)


def whole(text: str, least: int = 0, most: int | None = None) -> int:
    """An argparse type: a whole number from LEAST to MOST (bound with functools.partial)."""
    if not (text.isascii() and text.isdigit()) or int(text) < least or (most is not None and int(text) > most):
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(least, f"an integer of at least {least}")
        raise argparse.ArgumentTypeError(f"must be {kind}{f' up to {most}' if most else ''}, got '{text}'")
    return int(text)


def slurm_seconds(limit: str) -> int:
    """A Slurm time limit (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in seconds, 0 for none."""
    if limit.lower() in ("infinite", "unlimited"):
        return 0
    days, dash, rest = limit.partition("-") if "-" in limit else ("0", "", limit)
    parts = rest.split(":")
    if len(parts) > 3 or not all(part.isascii() and part.isdigit() for part in [days, *parts]):
        raise argparse.ArgumentTypeError(
            f"'{limit}' is not a Slurm time limit (MINUTES, H:MM:SS, DAYS-HH:MM:SS, DAYS-HH, ...)"
        )
    units = [3600, 60, 1] if dash or len(parts) == 3 else [60, 1]  # D-H..., H:M:S; or M, M:S
    return int(days) * 86400 + sum(int(part) * unit for part, unit in zip(parts, units))


def slurm_time(limit: str) -> str:
    """An argparse type: a Slurm time limit, as given."""
    slurm_seconds(limit)
    return limit


def one_of(word: str, choices, what: str) -> str:
    """An argparse type: one of CHOICES, or the error "unknown WHAT" with the known ones.

    It checks a single value (--preset) and each word of a list (--methods), which argparse's `choices` cannot."""
    if word not in choices:
        raise argparse.ArgumentTypeError(f"unknown {what} '{word}' (known: {', '.join(choices)})")
    return word


def word_list(text: str, check) -> list:
    """An argparse type: a list given as one argument, at least one word separated by spaces, each checked by CHECK."""
    if not text.split():
        raise argparse.ArgumentTypeError("is empty")
    return [check(word) for word in text.split()]


def env_id(word: str) -> str:
    """An argparse type: an Atari game id in a shape ale-py registers (the scripts catch the rest, a typo say)."""
    if not re.fullmatch(r"ALE/[A-Za-z]+-v5|[A-Z][A-Za-z]*(NoFrameskip|Deterministic)?-v[04]", word):
        raise argparse.ArgumentTypeError(f"'{word}' is not an Atari game id (GameNoFrameskip-v4 or ALE/Game-v5)")
    return word


def sweep(spec: str) -> tuple[str, list[str]]:
    """An argparse type: one --sweep, FLAG=V1 V2 ...: a flag of sprig_ppo_atari.py without its dashes, then numbers."""
    flag, equals, values = spec.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"needs FLAG=VALUE [VALUE ...], e.g. \"alpha-coop=0.0 0.3 0.7 1.0\"; got '{spec}'")
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", flag):
        raise argparse.ArgumentTypeError(f"'{flag}' is not a flag name (a flag of {SPRIG} without its dashes)")
    if f"--{flag}" in PER_RUN_FLAGS:
        raise argparse.ArgumentTypeError(f"--{flag} is set by benchmark.sh itself and cannot be swept")
    if f"--{flag}" in MACHINERY_FLAGS:
        raise argparse.ArgumentTypeError(f"--{flag} changes how a run goes, not what it computes, and cannot be swept")
    for value in values.split():
        if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value):
            raise argparse.ArgumentTypeError(f"{flag}: '{value}' is not a number")
    if not values.split():
        raise argparse.ArgumentTypeError(f'{flag}: no values (e.g. --sweep "{flag}=0.1 0.2")')
    return flag, values.split()


def build_parser() -> Parser:
    methods = [f"{m.name:<18} {shlex.join([m.script, *m.flags])}: {m.what}" for m in METHODS]
    p = Parser(
        prog="./benchmark.sh",
        usage="./benchmark.sh [options] [-- flags passed to every run]",
        allow_abbrev=False,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=34, width=120),
        description=HELP.format(
            methods="\n".join(textwrap.fill(line, 116, initial_indent="  ", subsequent_indent=" " * 21) for line in methods),
            paper=" ".join(PRESETS["paper"]),
        ),
        epilog=DETAILS,
    )
    count, positive, two_or_more = whole, partial(whole, least=1), partial(whole, least=2)  # the argparse types
    method = partial(one_of, choices=[method.name for method in METHODS], what="method")
    game_set = partial(one_of, choices=GAME_SETS, what="game set")
    preset = partial(one_of, choices=PRESETS, what="preset")
    add = p.add_argument
    add("--methods", type=partial(word_list, check=method), metavar='"M ..."', help="default: ppo sprig")
    add("--env-ids", type=partial(word_list, check=env_id), metavar='"IDS"', help="env ids (default: BeamRiderNoFrameskip-v4)")
    add("--games", type=game_set, metavar="NAME", help="a game set instead of --env-ids")
    add("--seeds", type=partial(word_list, check=count), metavar='"1 2 ..."', help="seeds (default: 1 2 3 4 5)")
    add("--total-timesteps", type=positive, metavar="N", help="env steps per run (default: 10000000)")
    add("--stop-at-step", type=positive, metavar="N", help="pause every run at N steps, checkpointed (below)")
    add("--workers", type=positive, metavar="N", help="runs at once, the cores split between them (default: 1; below)")
    add("--no-mps", action="store_true", help="on a GPU, 2 or more workers without NVIDIA MPS (below)")
    add("--checkpoint-every", type=count, metavar="N", help="checkpoint.pt every N iterations (default: 25)")
    add("--out", metavar="DIR", help="results directory (default: benchmark_results; benchmark_results_quick with --quick)")
    add("--preset", type=preset, default="cleanrl", metavar="NAME", help="cleanrl (default) or paper")
    add("--quick", action="store_true", help="CPU-sized check: seeds 1 2, 50000 steps, 2 workers (each unless given)")
    add("--dry-run", action="store_true", help="print the runs, states and commands (--sps: its own); run and create nothing")
    add("--no-plot", action="store_true", help="do not call plot_results.py at the end")
    add("--sweep", type=sweep, action="append", default=[], metavar='"FLAG=V ..."', help="sprig once per value (below)")
    add("--sps", action="store_true", help="measure each method's speed instead (below)")
    add("--sps-iterations", type=two_or_more, metavar="N", help="iterations of each --sps run (default: 4)")
    add("--sps-from", metavar="DIR", help="the cost estimate's speeds from another machine's --sps (below)")
    add_slurm = p.add_argument_group("Slurm (below)").add_argument
    add_slurm("--slurm", action="store_true", help="write OUT/sprig_benchmark*.sbatch, and submit them if sbatch is on PATH")
    add_slurm("--partition", metavar="P", help="partition (default: the cluster's default)")
    add_slurm("--time", type=slurm_time, metavar="T", help="time limit per task (default: 24:00:00)")
    up_to_65535 = partial(whole, most=65535)  # Slurm's --signal=B:USR1@SECONDS takes 0 to 65535
    add_slurm("--time-margin", type=up_to_65535, metavar="S", help="warn tasks S s before it (default: 300)")
    add_slurm("--gpus", type=count, metavar="N", help="GPUs per task (default: 1; with 0 the runs get --no-cuda)")
    add_slurm("--cpus-per-task", type=positive, metavar="N", help="CPUs per task, the runs' threads (default: 4)")
    return p


HELP = """\
Runs every (method x env x seed) combination of ppo_atari.py / sprig_ppo_atari.py, each in its own directory
OUT/PRESET/ENV/METHOD/seedSEED/ (runs/, log.txt, command.txt, and a 'done' marker once it exited 0), then calls
plot_results.py on OUT/PRESET (figure2.png, results.md). Rerunning skips finished runs and resumes unfinished ones
from their last checkpoint (from scratch if they have none); a run done or checkpointed with other flags is an error,
left as it is. Concurrent invocations never run the same combination twice (across machines, where their shared file
system's locks work across them).
How a run ended is its script's exit status: 0 finished (done), 3 stopped by a signal with its checkpoint
(interrupted), 4 paused at --stop-at-step, other failed.

methods:
{methods}

presets:
  cleanrl  the scripts' defaults (CleanRL's ppo_atari; the default)
  paper    the paper's Table 1 for every method (docs/design.md, "The paper's setup (Table 1, Figure 2)"):
           {paper}

game sets, each game as its NoFrameskip-v4 id:
  atari5   BattleZone DoubleDunk NameThisGame Phoenix Qbert, the five games whose scores best predict the median over
           all 57 (Atari-5; Aitchison, Sweetser & Hutter 2022)
  atari3   BattleZone NameThisGame Phoenix, that paper's validation set, for tuning"""

DETAILS = """\
--stop-at-step N pauses each run at N steps of its --total-timesteps schedule; the same command with a larger N, or
  none, goes on. --workers N splits the cores between the runs (OMP_NUM_THREADS = cores // workers, at least 1; a run
  uses about 2 cores); on an NVIDIA GPU each local run gets --async-envs, and 2 or more share it through NVIDIA MPS.
  Local runs and their --dry-run start with the cost, at the speeds --sps measured with the same --preset (in OUT/sps,
  or --sps-from); --sps runs each method alone, on the first env id and seed, for --sps-iterations iterations.
  --sweep runs only sprig (no other --methods), as --FLAG V --exp-name sprig_FLAG=V. --slurm submits a job array and
  a plot job; a task warned of its time limit checkpoints and requeues itself; --partition, --time, --time-margin,
  --gpus and --cpus-per-task go with it only. README.md has the details.

environment: PYTHON   the python that runs the scripts and plot_results.py (default: python)

examples:
  ./benchmark.sh --quick
  ./benchmark.sh --preset paper --workers 2 -- --async-envs
  ./benchmark.sh --slurm --partition gpu --seeds "1 2 3 4 5"
  ./benchmark.sh --games atari5 --preset paper --seeds "1 2 3" --dry-run
  ./benchmark.sh --sweep "alpha-coop=0.0 0.3 0.7 1.0" --sweep "attn-cost-coef=0 1e-4 1e-3\""""


@dataclass
class Plan:
    options: argparse.Namespace  # the command line, checked
    runs: list[Run]
    methods: list[str]  # the methods run (sprig alone in a sweep)
    env_ids: list[str]
    out: str
    results_dir: str  # OUT/PRESET
    cores: int
    threads: int  # each run's: the cores split between the workers
    cuda: bool  # on this machine, an NVIDIA GPU (nvidia-smi -L lists one) for runs not given --no-cuda
    python: str  # $PYTHON, which runs the scripts and plot_results.py

    def plot_commands(self) -> list[tuple[list[str], str]]:
        """The plots at the end, with what each makes: plot_results.py on the results, and after a sweep its trade-off.
        An empty list with --no-plot."""
        if self.options.no_plot:
            return []
        plot, results = repo_file("plot_results.py"), self.results_dir
        commands = [([self.python, plot, results], f"figure: {results}/figure2.png, table: {results}/results.md")]
        if self.options.sweep:
            commands.append(([self.python, plot, "tradeoff", results], f"trade-off: {results}/tradeoff_FLAG.png and .md"))
        return commands


# The options' defaults. They are filled in only after the checks below, so that the checks can tell an option the user
# gave from its default: one given where it means nothing (NEEDS), or beside one it does not go with (EXCLUSIVE).
DEFAULTS = {
    "methods": ["ppo", "sprig"],
    "env_ids": ["BeamRiderNoFrameskip-v4"],
    "seeds": [1, 2, 3, 4, 5],
    "total_timesteps": 10000000,
    "workers": 1,
    "checkpoint_every": 25,
    "out": "benchmark_results",
    "sps_iterations": 4,
    "time": "24:00:00",
    "time_margin": 300,
    "gpus": 1,
    "cpus_per_task": 4,
}
# --quick's defaults: a CPU-sized check, in a results directory of its own so that its runs never stand in for others.
QUICK = {"seeds": [1, 2], "total_timesteps": 50000, "workers": 2, "out": "benchmark_results_quick"}
# Options that mean nothing without another: given alone, they would be ignored.
NEEDS = [(option, "slurm") for option in ("partition", "time", "time_margin", "gpus", "cpus_per_task")]
NEEDS += [("sps_iterations", "sps")]
EXCLUSIVE = [  # options that do not go together, and why not
    ("games", "env_ids", "--games names the env ids"),
    ("no_mps", "slurm", "a Slurm task has its GPU to itself, without MPS"),
    ("no_mps", "sps", "--sps runs one method at a time, without MPS"),
    ("sps_from", "sps", "--sps measures this machine's speeds"),
    ("sps_from", "slurm", "--slurm estimates no wall time"),
    ("sweep", "sps", "measure speed without --sweep"),
    ("sps", "slurm", "--sps measures this machine's speeds"),
    ("workers", "slurm", "each Slurm task runs one run"),
    ("workers", "sps", "--sps runs one method at a time"),
    ("stop_at_step", "sps", "--sps runs --sps-iterations iterations"),
    ("total_timesteps", "sps", "--sps runs --sps-iterations iterations"),
    ("checkpoint_every", "sps", "--sps runs --sps-iterations iterations"),
    ("no_plot", "sps", "--sps's speed table is what it makes"),
]


def was_given(options: argparse.Namespace, name: str) -> bool:
    """Whether the option NAME was given (before DEFAULTS are filled in). `--checkpoint-every 0` is given too."""
    value = getattr(options, name)
    return value is not None and value is not False and value != []  # not `value not in (None, False, [])`: 0 == False


def dashed(name: str) -> str:
    """An option's name on the command line, from its name in the Namespace: time_margin is --time-margin."""
    return f"--{name.replace('_', '-')}"


def parse_options(p: Parser, argv: list[str]) -> argparse.Namespace:
    """Parse the command line, check each option against the others (the first mistake in one line, exit 2), and fill
    in the defaults. The flags after -- (every run gets them) are left in options.extra_flags; make_plan checks the
    values that only the runs' flags show (a sweep's, --stop-at-step's, the batch's)."""
    dashes = argv.index("--") if "--" in argv else len(argv)
    options = p.parse_args(argv[:dashes])
    # Each option's dest is its long name without the dashes, `-` as `_`; --help has none, so it is added.
    own_options = {*map(dashed, vars(options)), "--help"}
    options.extra_flags = argv[dashes + 1 :]
    # These checks come before the defaults are filled in, so that they can tell an option given from its default.
    for name, _ in flag_groups(options.extra_flags):
        if options.sps and name in ("--stop-at-step", "--resume"):
            p.error(f"{name} after -- does not go with --sps: its runs train --sps-iterations iterations from scratch")
        if name in PER_RUN_FLAGS:
            p.error(f"{name} after --: benchmark.sh sets it for each run itself, from its {PER_RUN_FLAGS[name]}")
        if name in own_options - MACHINERY_FLAGS:
            p.error(f"{name} is an option of benchmark.sh, not of the runs: give it before --")
    for option, mode in NEEDS:
        if was_given(options, option) and not was_given(options, mode):
            p.error(f"{dashed(option)} goes with {dashed(mode)}, and without it would be ignored")
    for first, second, why in EXCLUSIVE:
        if was_given(options, first) and was_given(options, second):
            p.error(f"{dashed(first)} and {dashed(second)} do not go together: {why}")
    if options.sweep and options.methods not in (None, ["sprig"]):
        p.error(f"--sweep runs only sprig, and --methods '{' '.join(options.methods)}' asks for others: give --methods sprig")
    defaults = {**DEFAULTS, **(QUICK if options.quick else {}), **({"methods": ["sprig"]} if options.sweep else {})}
    for name, default in defaults.items():
        if getattr(options, name) is None:
            setattr(options, name, default)
    if 0 < slurm_seconds(options.time) <= options.time_margin:
        p.error(f"--time-margin {options.time_margin} is not shorter than --time {options.time}: no time to train")
    if options.sps_from is not None and not os.path.isdir(options.sps_from):
        p.error(f"--sps-from: '{options.sps_from}' is not a directory (an --out of --sps, or its sps/ or sps/DATE/)")
    return options


def variants(p: Parser, options: argparse.Namespace) -> list[tuple[str, str, tuple[str, ...]]]:
    """(method, its runs' directory name, its flags) for each method to run.

    In a sweep, sprig runs once per swept value, named sprig_FLAG=VALUE (the name plot_results.py reads back)."""
    if not options.sweep:
        return [(name, name, method_named(name).run_flags) for name in options.methods]
    set_elsewhere = {name[2:] for name, _ in flag_groups([*PRESETS[options.preset], *options.extra_flags])}
    swept = [(flag, value) for flag, values in options.sweep for value in values]
    for index, (flag, value) in enumerate(swept):
        if flag in set_elsewhere:
            p.error(f"--sweep {flag}: --{flag} is also given by the preset or after --")
        if any(other == flag and float(earlier) == float(value) for other, earlier in swept[:index]):  # 0.3 is .30
            p.error(f"--sweep {flag}: the value {value} is listed twice")
    return [
        ("sprig", f"sprig_{flag}={value}", (f"--{flag}", value, "--exp-name", f"sprig_{flag}={value}"))
        for flag, value in swept
    ]


def machinery_flags(options: argparse.Namespace, given: list[str], cuda: bool) -> list[str]:
    """The MACHINERY_FLAGS every run gets: benchmark.sh's own, then GIVEN (those after --), last so that they win."""
    machinery = ["--checkpoint-every", str(options.checkpoint_every)]
    if options.slurm and options.gpus == 0:
        machinery.append("--no-cuda")
    if options.stop_at_step:
        machinery += ["--stop-at-step", str(options.stop_at_step)]
    if async_envs_added(given, cuda):
        machinery.append("--async-envs")  # a run on a GPU mostly waits on it: its envs step on the idle cores
    return machinery + given


def async_envs_added(given: list[str], cuda: bool) -> bool:
    """Whether benchmark.sh gives every run --async-envs: on a GPU, unless GIVEN (the machinery flags after --) says."""
    return cuda and not {"--async-envs", "--no-async-envs"} & set(given)


def stop_at_step(p: Parser, machinery: list[str]) -> int | None:
    """The step at which every run pauses: the last --stop-at-step of MACHINERY, or None (which the scripts take too)."""
    stop = last_value(machinery, "--stop-at-step", "None")
    if stop == "None":
        return None
    if not (stop.isascii() and stop.isdigit() and int(stop) > 0):  # only one given after -- can be wrong here
        p.error(f"--stop-at-step after --: must be a positive integer or None, got '{stop}'")
    return int(stop)


def make_plan(argv: list[str]) -> Plan:
    """Parse and check the command line (the first mistake in one line, exit 2), and lay out the run matrix."""
    if (mistake := methods_table_mistake()) is not None:  # a table that would mix two methods up: not the user's mistake
        say(f"error: {mistake}", error=True)
        raise SystemExit(2)
    p = build_parser()
    options = parse_options(p, argv)
    method_variants = variants(p, options)
    results, given_machinery = split_machinery(options.extra_flags)
    cuda = not (options.slurm or options.sps) and "--no-cuda" not in given_machinery and cuda_device_listed()
    machinery = machinery_flags(options, given_machinery, cuda)
    stop = stop_at_step(p, machinery)
    for flag in ("--num-envs", "--num-steps"):  # the batch, which --sps and the scripts' checks read
        try:
            whole(last_value(options.extra_flags, flag, "1"), least=1)
        except argparse.ArgumentTypeError as error:
            p.error(f"{flag} after --: {error}")
    env_ids = list(GAME_SETS[options.games]) if options.games else options.env_ids
    out = os.path.abspath(options.out)
    common_flags = (*PRESETS[options.preset], *results)
    runs = [
        Run(
            method=method,
            name=name,
            env_id=env,
            seed=seed,
            script=repo_file(method_named(method).script),
            flags=("--env-id", env, "--seed", str(seed), "--total-timesteps", str(options.total_timesteps), *flags)
            + common_flags,
            machinery=tuple(machinery),
            stop_at_step=stop,
            directory=f"{out}/{options.preset}/{env}/{name}/seed{seed}",
        )
        for seed in options.seeds
        for env in env_ids
        for method, name, flags in method_variants
    ]
    if twice := [directory for directory, n in Counter(run.directory for run in runs).items() if n > 1]:
        p.error(f"a method, env id or seed is listed twice: {twice[0]}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # not on macOS
    return Plan(
        options=options,
        runs=runs,
        methods=list(dict.fromkeys(method for method, _, _ in method_variants)),
        env_ids=env_ids,
        out=out,
        results_dir=f"{out}/{options.preset}",
        cores=cores,
        threads=max(1, cores // options.workers),
        cuda=cuda,
        python=os.environ.get("PYTHON") or "python",
    )


# --- The GPU of a local run. Measured on one H200 with 16 cores, ten paper-preset runs at once: without MPS, ten CUDA
# contexts time-slice the GPU (2,655 SPS in all); with NVIDIA's Multi-Process Service they share it (5,970 SPS). And a
# run's process mostly waits on the GPU: envs stepping in subprocesses (--async-envs) use the idle cores, 12% faster.
def cuda_device_listed() -> bool:
    """Whether nvidia-smi -L lists a GPU (torch is never imported here) that CUDA_VISIBLE_DEVICES does not hide."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip() in ("", "-1") or shutil.which("nvidia-smi") is None:
        return False
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
        return listing.returncode == 0 and any(line.startswith("GPU ") for line in listing.stdout.splitlines())
    return False


def mps_variables(plan: Plan) -> dict[str, str] | None:
    """The MPS daemon that 2 or more workers on a GPU share, as the variables of its directories.

    None where the runs need none. {} where a daemon already runs ($CUDA_MPS_PIPE_DIRECTORY holds its pipe). Otherwise
    the directories of one to start in OUT/mps/ (its pipes go to /tmp where a socket's path would be too long)."""
    if not plan.cuda or plan.options.workers < 2 or plan.options.no_mps or not shutil.which("nvidia-cuda-mps-control"):
        return None
    if os.path.exists(os.path.join(os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or "/tmp/nvidia-mps", "control")):
        return {}
    pipes = f"{plan.out}/mps/pipe" if len(os.fsencode(f"{plan.out}/mps/pipe")) <= 80 else f"/tmp/sprig-mps-{os.getpid()}"
    return {"CUDA_MPS_PIPE_DIRECTORY": pipes, "CUDA_MPS_LOG_DIRECTORY": f"{plan.out}/mps/log"}


@contextlib.contextmanager
def mps_daemon(variables: dict[str, str] | None):
    """Run the daemon of mps_variables while the runs run, and stop it after the last, even on Ctrl-C.

    Yields the variables the runs need to reach it ({} for none)."""
    environment = {**os.environ, **(variables or {})}
    if variables:
        for directory in variables.values():
            os.makedirs(directory, exist_ok=True)
        started = subprocess.run(["nvidia-cuda-mps-control", "-d"], env=environment).returncode
        if started:
            say(f"warning: nvidia-cuda-mps-control -d failed (exit {started}): the runs time-slice the GPU", error=True)
            variables = None
    try:
        yield variables or {}
    finally:
        if variables:
            stopped = subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True, env=environment).returncode
            if stopped:
                say(f"warning: echo quit | nvidia-cuda-mps-control failed (exit {stopped})", error=True)
            if variables["CUDA_MPS_PIPE_DIRECTORY"].startswith("/tmp/sprig-mps-"):
                shutil.rmtree(variables["CUDA_MPS_PIPE_DIRECTORY"], ignore_errors=True)


def gpu_lines(plan: Plan) -> list[str]:
    """What a local run does differently on a GPU: every run gets --async-envs, and 2 or more workers share it by MPS."""
    variables, lines = mps_variables(plan), []
    if async_envs_added(split_machinery(plan.options.extra_flags)[1], plan.cuda):
        lines.append("GPU (nvidia-smi -L): every run gets --async-envs, its envs stepping on the cores the GPU leaves idle")
    if variables:
        pipes, logs = variables.values()
        lines.append(
            f"MPS: the runs share the GPU through an MPS control daemon started for them (pipes in {pipes}, logs in {logs}), "
            "stopped after the last run; --no-mps: without"
        )
    elif variables == {}:
        pipes = os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or "/tmp/nvidia-mps"
        lines.append(f"MPS: the runs share the GPU through the MPS control daemon already running (pipes in {pipes})")
    elif plan.cuda and plan.options.workers >= 2 and not plan.options.no_mps:
        lines.append("MPS: nvidia-cuda-mps-control is not on PATH: the runs time-slice the GPU")
    return lines


# --- On this machine: every run of the matrix, --workers at a time in a thread pool. Each run has a process group of its
# own, so that Ctrl-C reaches only this process, which then stops every run (each writes its checkpoint on its way out).
# The line said as a run ends, for each status run_one returns.
ENDED = {
    "ran": "finished in {seconds} s",
    "skipped": "already done, skipped",
    "paused": "paused at --stop-at-step {paused}, checkpointed; not done: a larger --stop-at-step goes on",
    "locked": "running in another invocation, left to it",
    "conflict": "NOT RUN: done or checkpointed earlier with other flags",
    "interrupted": "interrupted after {seconds} s; checkpointed, a rerun resumes it",
    "failed": "FAILED after {seconds} s",
}
# The line for each run that did not finish, after the summary, on stderr where it cannot scroll away. Any one of these
# statuses makes the exit status 1.
NOT_DONE = {
    "conflict": "NOT RUN: {label}: {directory} done or checkpointed earlier with other flags",
    "interrupted": "INTERRUPTED: {label}: checkpointed in {directory}; run the same command again to resume",
    "failed": "FAILED: {label}; log: {directory}/log.txt",
}


def run_locally(plan: Plan) -> int:
    """Run every run, --workers at a time, then say the summary and make the plots.

    Returns the exit status: 0 if every run is done (or paused, or left to another invocation) and every plot was made,
    130 after Ctrl-C, 1 otherwise."""
    for line in overview(plan):
        say(line)
    with mps_daemon(mps_variables(plan)) as environment:
        statuses = run_pool(plan, environment)
    if statuses is None:
        return 130
    counts = Counter(statuses)
    say("")
    for run, status in zip(plan.runs, statuses):
        if status in NOT_DONE:
            say(NOT_DONE[status].format(label=run.label, directory=run.directory), error=True)
    say(
        f"summary: {counts['ran']} ran, {counts['skipped']} already done (skipped), {counts['paused']} paused at "
        f"--stop-at-step, {counts['locked']} running elsewhere (locked), {counts['interrupted']} interrupted "
        f"(checkpointed), {counts['conflict']} not run (other flags), {counts['failed']} failed"
    )
    plotted = [plot(command, makes) for command, makes in plan.plot_commands()]
    return 1 if any(counts[status] for status in NOT_DONE) or not all(plotted) else 0


def plot(command: list[str], makes: str) -> bool:
    """Run one of Plan.plot_commands, and say what it made or that it failed."""
    plotted = subprocess.run(command).returncode == 0
    say(makes if plotted else f"failed: {shlex.join(command)}", error=not plotted)
    return plotted


def run_pool(plan: Plan, environment: dict[str, str]) -> list[str] | None:
    """Run the runs in a pool of --workers threads, in the matrix's order, and return each one's status.

    Returns None once SIGINT, SIGTERM or SIGHUP has stopped them: each run then writes its checkpoint, and a second
    signal kills them."""
    stoppers: dict[int, Stopper] = {}  # of the runs in progress
    stopping = threading.Event()

    def interrupt(signum, frame):
        again = stopping.is_set()
        stopping.set()
        say("interrupted again: killing the runs" if again else "interrupted: stopping the runs", error=True)
        for stopper in list(stoppers.values()):
            stopper.stop(signal.SIGKILL if again else signal.SIGTERM)

    def one(index: int, run: Run) -> str:
        if stopping.is_set():  # stopped before this one was taken: it is left as it is
            return "interrupted"
        stoppers[index] = stopper = Stopper(own_process_group=True)
        if stopping.is_set():  # stopped while it was being taken: it does not start
            stopper.stop()
        start = time.monotonic()
        try:
            status = run_one(run, plan.python, plan.threads, stopper, environment)
        except Exception:  # a bug, or a disk that failed: this run fails, the others go on
            say(traceback.format_exc().rstrip("\n"), error=True)
            status = "failed"
        del stoppers[index]
        ended = ENDED[status].format(seconds=int(time.monotonic() - start), paused=run.paused_at())
        say(f"[{index + 1}/{len(plan.runs)}] {run.label}: {ended}")
        return status

    handlers = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        with ThreadPoolExecutor(max_workers=plan.options.workers) as pool:
            statuses = list(pool.map(one, range(len(plan.runs)), plan.runs))  # waits in the main thread, where signals land
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    return None if stopping.is_set() else statuses


# --- --dry-run: the run matrix, each run's state and its exact command; nothing run, nothing created.
STATES = {
    "new": "new",
    "done": "done: skip",
    "conflict": "done or checkpointed with other flags: conflict, left as it is",
    "resume": "unfinished: resume from its checkpoint, with the same command",
    "clean": "unfinished: clean and rerun",
    "paused": "paused at --stop-at-step {paused}: skip, until --stop-at-step grows",
}


def describe(run: Run, state: str) -> str:
    """RUN's STATE (one of Run.state's) in words."""
    return STATES[state].format(paused=run.paused_at())


def python_missing(plan: Plan) -> str | None:
    """Why $PYTHON cannot run the scripts here, in one line; None if it can."""
    if shutil.which(plan.python) is None:
        return f"the python that runs the scripts, '{plan.python}', is not a command here; name one with PYTHON="
    return None


def missing_scripts(plan: Plan) -> list[tuple[str, str]]:
    """(method, its script's path) for each method whose script is not beside this file."""
    scripts = [(method, repo_file(method_named(method).script)) for method in plan.methods]
    return [(method, script) for method, script in scripts if not os.path.isfile(script)]


def overview(plan: Plan) -> list[str]:
    """The lines said before the runs start, and at the top of --dry-run: what runs, what it costs, and what a GPU changes."""
    options, sweep = plan.options, plan.options.sweep
    swept_values = "; ".join(f"{flag}: {' '.join(values)}" for flag, values in sweep)
    swept = f"sprig at {sum(len(values) for _, values in sweep)} swept values ({swept_values})" if sweep else ""
    matrix = f"{len(plan.runs)} runs = {swept or f'{len(plan.methods)} methods'} x {len(plan.env_ids)} envs x "
    return [
        f"{matrix}{len(options.seeds)} seeds, preset {options.preset}, {options.total_timesteps} steps each, "
        f"{options.workers} workers x {plan.threads} threads ({plan.cores} cores), results in {plan.results_dir}",
        *cost_lines(plan),
        *gpu_lines(plan),
    ]


def print_dry_run(plan: Plan) -> None:
    for line in overview(plan):
        print(f"# {line}")
    for method, script in missing_scripts(plan):
        print(f"# warning: {method} needs {script}, which does not exist (yet)")
    if mistake := python_missing(plan):
        print(f"# warning: {mistake}")
    states = [run.state() for run in plan.runs]
    print("# method env seed dir [state]")
    for run, state in zip(plan.runs, states):
        print(f"{run.label} {run.directory} [{describe(run, state)}]")
    print("# commands (each run from its dir, stdout+stderr to log.txt there):")
    variables = {**thread_variables(plan.threads), **(mps_variables(plan) or {})}
    for run, state in zip(plan.runs, states):  # as run_one will start it: a run it resumes, with --resume
        resume = run.checkpoint() if state == "resume" else None
        print(shell_line(run.directory, run.command(plan.python, resume), variables))
    for command, _ in plan.plot_commands():
        print(shlex.join(command))


# --- --slurm: a job array with one task per run, and a job that plots once every task has ended. Both scripts hold only
# data and one call of this file. Each task calls `benchmark.py slurm-task THREADS PYTHON RUN` with its run's record as
# JSON (slurm_task); the plot job calls `benchmark.py slurm-report` with every record on stdin (slurm_report).
def sbatch_scripts(plan: Plan) -> dict[str, str]:
    """{path: script}: the job array, and (unless --no-plot) the plot job, which Slurm runs after the array's last task."""
    options, benchmark, out = plan.options, shlex.quote(repo_file("benchmark.py")), plan.out
    common = [f"#SBATCH --partition={options.partition}"] if options.partition else []
    python_env = ["# Load modules / activate the Python environment here if the job needs it.", ""]
    then_plot = "" if options.no_plot else f", then {out}/sprig_benchmark_plot.sbatch with --dependency=afterany:ARRAYID"
    array_script = [
        "#!/bin/bash",
        f"# SPRIG benchmark: {len(plan.runs)} runs (preset {options.preset}), one array task each. Written by benchmark.sh",
        f"# --slurm, which submits it{then_plot}.",
        "#SBATCH --job-name=sprig-benchmark",
        f"#SBATCH --array=0-{len(plan.runs) - 1}",
        f"#SBATCH --time={options.time}",
        f"#SBATCH --cpus-per-task={options.cpus_per_task}",
        *([f"#SBATCH --gpus={options.gpus}"] if options.gpus else []),
        *common,
        f"#SBATCH --output={out}/slurm-%A_%a.out",
        "#SBATCH --open-mode=append",  # a requeued task goes on writing its output file
        "#SBATCH --requeue",
        *([f"#SBATCH --signal=B:USR1@{options.time_margin}"] if options.time_margin else []),  # checkpoint and requeue
        "set -euo pipefail",
        *python_env,
        "# The run of this task, its record as benchmark.py reads it. benchmark.py runs it (or skips it if it is done),",
        "# and on Slurm's warning (SIGUSR1) stops it with its checkpoint and requeues this task, which resumes it.",
        "case ${SLURM_ARRAY_TASK_ID:?run this script with sbatch} in",
        *(f"{index}) # {run.label}\n    run={shlex.quote(json.dumps(asdict(run)))} ;;" for index, run in enumerate(plan.runs)),
        '*) echo "no run for array task $SLURM_ARRAY_TASK_ID" >&2 && exit 1 ;;',
        "esac",
        f'exec python3 {benchmark} slurm-task "${{SLURM_CPUS_PER_TASK:-{options.cpus_per_task}}}" '
        f'{shlex.quote(plan.python)} "$run"',
    ]
    plot_script = [
        "#!/bin/bash",
        f"# SPRIG benchmark: once every task of {out}/sprig_benchmark.sbatch has ended, name the runs not done and plot",
        "# the others. Written by benchmark.sh --slurm, which submits it with --dependency=afterany:ARRAYID.",
        "#SBATCH --job-name=sprig-benchmark-plot",
        f"#SBATCH --time={options.time if 0 < slurm_seconds(options.time) < 1800 else '0:30:00'}",  # a partition's limit
        "#SBATCH --cpus-per-task=1",
        *common,
        f"#SBATCH --output={out}/slurm-plot-%j.out",
        "set -uo pipefail",
        *python_env,
        "status=0  # the runs, one record a line: benchmark.py names those not done, and counts them",
        f"python3 {benchmark} slurm-report <<'END_OF_RUNS' || status=1",
        *(json.dumps(asdict(run)) for run in plan.runs),
        "END_OF_RUNS",
        *(f"{shlex.join(command)} && echo {shlex.quote(makes)} || status=1" for command, makes in plan.plot_commands()),
        "exit $status",
    ]
    scripts = {f"{out}/sprig_benchmark.sbatch": array_script}
    if not options.no_plot:
        scripts[f"{out}/sprig_benchmark_plot.sbatch"] = plot_script
    return {path: "\n".join(lines) + "\n" for path, lines in scripts.items()}


def submit(plan: Plan) -> int:
    """Write the sbatch scripts, and submit them (the array, then the plot job after it) if sbatch is on PATH."""
    os.makedirs(plan.out, exist_ok=True)
    scripts = sbatch_scripts(plan)
    for path, script in scripts.items():
        with open(path, "w") as file:
            file.write(script)
        say(f"wrote {path}")
    if shutil.which("sbatch") is None:
        array, *plot = scripts  # the plot job's script, unless --no-plot
        after = "".join(f" && sbatch --dependency=afterany:${{id%%;*}} {path}" for path in plot)
        say("sbatch is not on PATH; on the cluster, run this same command there, or submit with:")
        say(f"  id=$(sbatch --parsable {array}){after}")
        return 0
    jobs: list[str] = []
    for script in scripts:
        after = [f"--dependency=afterany:{jobs[0]}"] if jobs else []
        submitted = subprocess.run(["sbatch", "--parsable", *after, script], stdout=subprocess.PIPE, text=True)
        job = submitted.stdout.strip().split(";")[0]  # --parsable prints "id" or "id;cluster"
        if submitted.returncode or not job.isdigit():
            say(f"error: sbatch {script} failed{'; the array runs, but nothing will plot it' if jobs else ''}", error=True)
            return 1
        jobs.append(job)
        if len(jobs) == 1:
            say(
                f"submitted the job array: job {job}, {len(plan.runs)} tasks; "
                f"each task's output: {plan.out}/slurm-{job}_TASK.out"
            )
        else:
            say(f"submitted the plot job: job {job}, once all tasks have ended ({plan.results_dir}/results.md)")
    say(f"follow: squeue -j {','.join(jobs)}; tail {plan.out}/slurm-{jobs[0]}_*.out; each run's log.txt")
    return 0


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def slurm_task(threads: int, python: str, run: Run) -> int:
    """One task of the job array: run_one on RUN.

    SIGUSR1 (Slurm's warning before the time limit) or SIGTERM (scancel) stops the run as Ctrl-C does. After the warning,
    the task requeues itself if the run wrote a checkpoint since this start. Returns 0 when the run is done or paused,
    or the task requeued itself; 1 when the run failed, is locked or conflicts; 3 when it stopped (and was not requeued)."""
    task, stopper, warned = slurm_job(), Stopper(own_process_group=False), threading.Event()

    def stop(signum, frame):  # os.write, not print: the handler may run inside a print of the main thread
        os.write(1, f"{now()} {signal.Signals(signum).name}: stopping the run (its iteration, then a checkpoint)\n".encode())
        if signum == signal.SIGUSR1:
            warned.set()
        stopper.stop()

    def checkpoint_stamp() -> tuple[str, float] | None:  # changes each time the run writes its checkpoint
        checkpoint = run.checkpoint()
        if checkpoint is None:
            return None
        return checkpoint, os.path.getmtime(checkpoint)

    signal.signal(signal.SIGUSR1, stop)
    signal.signal(signal.SIGTERM, stop)
    start = int(os.environ.get("SLURM_RESTART_COUNT") or 0) + 1
    say(f"{now()} task {task}, start {start}, on {os.uname().nodename}: {run.directory}")
    before = checkpoint_stamp()
    status = run_one(run, python, threads, stopper)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the run is over: a requeue's SIGTERM must not cut what follows
    say(f"{now()} {run.directory}: {status}")
    if status in ("ran", "skipped", "paused"):
        return 0
    if status != "interrupted":
        why = {"failed": "failed", "locked": "is locked", "conflict": "was done or checkpointed with other flags"}[status]
        say(f"not requeued: the run {why}; see {run.directory}/log.txt", error=True)
        return 1
    if warned.is_set() and checkpoint_stamp() not in (None, before):
        say(f"requeueing {task}: it starts again, resuming from its checkpoint")
        if subprocess.run(["scontrol", "requeue", task]).returncode == 0:
            return 0
        say(f"error: scontrol requeue {task} failed; the same benchmark.sh --slurm command resumes the run", error=True)
    elif warned.is_set():
        say(
            f"not requeued: the run wrote no checkpoint since this start (no progress); see {run.directory}/log.txt",
            error=True,
        )
    else:
        say("stopped with its checkpoint; not requeued by this task (the same benchmark.sh --slurm command resumes it)")
    return 3


def slurm_report(lines) -> int:
    """The plot job's report: each run not done, then how many are done. LINES are the runs' records as JSON."""
    runs = [Run.from_json(line) for line in lines if line.strip()]
    states = [(run, run.state()) for run in runs]
    not_done = [(run, state) for run, state in states if state != "done"]
    for run, state in not_done:
        say(f"not done: {run.label} ({describe(run, state)}); log: {run.directory}/log.txt")
    say(f"{len(runs) - len(not_done)} of {len(runs)} runs done, {len(not_done)} not done")
    return 0


# --- --sps and the cost estimate. --sps runs each method alone for a few iterations. plot_results.py sps writes their
# speeds to OUT/sps/DATE/sps.csv, and this file writes measured_with.json beside it (the preset, the flags after --, the
# machine's load). A later command's cost estimate reads the newest measurement of its --preset, from OUT/sps or
# --sps-from DIR.
class SpsRun(NamedTuple):
    method: str
    directory: str  # where it runs, and its log.txt
    command: list[str]


def sps_runs(plan: Plan, directory: str) -> list[SpsRun]:
    """The --sps run of each method, in DIRECTORY/METHOD: alone, on the first env and seed, for --sps-iterations whole
    iterations of the runs' batch."""
    options = plan.options
    flags = [*PRESETS[options.preset], *options.extra_flags]
    batch = int(last_value(flags, "--num-envs", "8")) * int(last_value(flags, "--num-steps", "128"))
    steps = batch * options.sps_iterations
    flags = ["--env-id", plan.env_ids[0], "--seed", str(options.seeds[0]), *flags, "--total-timesteps", str(steps)]
    return [
        SpsRun(method.name, f"{directory}/{method.name}", [plan.python, repo_file(method.script), *method.run_flags, *flags])
        for method in map(method_named, plan.methods)
    ]


def sps_directory(plan: Plan) -> str:
    """Where a --sps that starts now writes: OUT/sps/DATE."""
    return f"{plan.out}/sps/{time.strftime('%Y%m%d-%H%M%S')}"


def sps_plot_command(plan: Plan, directory: str) -> list[str]:
    return [plan.python, repo_file("plot_results.py"), "sps", directory]


def measure_sps(plan: Plan) -> int:
    """Run each method's --sps run, one at a time with every core; then make their speed table (plot_results.py sps)
    and write measured_with.json beside it."""
    options, directory = plan.options, sps_directory(plan)
    load = os.getloadavg()[0]
    if load >= plan.cores / 2:  # other work slows these runs, and so every wall time estimated from them
        say(
            f"warning: the machine is busy (load average {load:.2f} on {plan.cores} cores): these speeds come out slow",
            error=True,
        )
    environment = {**os.environ, **thread_variables(plan.cores)}
    for run in sps_runs(plan, directory):
        os.makedirs(run.directory, exist_ok=True)
        say(
            f"sps: {run.method}, {options.sps_iterations} iterations (the first warms up), {plan.cores} threads, "
            f"in {run.directory}"
        )
        with open(f"{run.directory}/log.txt", "w") as log:
            if subprocess.run(
                run.command, cwd=run.directory, env=environment, stdout=log, stderr=subprocess.STDOUT
            ).returncode:
                say(f"error: {run.method} failed; see {run.directory}/log.txt", error=True)
                return 1
    plot_command = sps_plot_command(plan, directory)
    if subprocess.run(plot_command).returncode:
        say(f"error: {shlex.join(plot_command)} failed", error=True)
        return 1
    with open(f"{directory}/measured_with.json", "w") as file:
        json.dump({"preset": options.preset, "flags": options.extra_flags, "load": round(load, 2), "cores": plan.cores}, file)
    return 0


def print_sps_dry_run(plan: Plan) -> None:
    directory = sps_directory(plan)
    runs = sps_runs(plan, directory)
    print(f"# --sps: {len(runs)} methods one at a time, {plan.options.sps_iterations} iterations each, into {directory}")
    for run in runs:
        print(shell_line(run.directory, run.command, thread_variables(plan.cores)) + " > log.txt 2>&1")
    print(shlex.join(sps_plot_command(plan, directory)))


class Speeds(NamedTuple):
    """The speeds a cost estimate reads: the newest --sps measurement of a --preset, where there is one."""

    where: str  # where measurements are looked for
    directory: str | None  # the newest of this --preset found there, or None
    measured_with: dict  # its measured_with.json
    sps: dict[str, float]  # {method's label: SPS} of its sps.csv


def newest_speeds(plan: Plan) -> Speeds:
    """The newest measurement of this --preset in OUT/sps; with --sps-from DIR, in DIR as --sps left it on another
    machine (a measurement, an OUT/sps, or an OUT). A directory that is not what --sps writes is passed over."""
    where = os.path.abspath(plan.options.sps_from or f"{plan.out}/sps")
    patterns = ("", "*/", "sps/*/") if plan.options.sps_from else ("*/",)
    found = [os.path.dirname(path) for pattern in patterns for path in glob.glob(f"{glob.escape(where)}/{pattern}sps.csv")]
    for directory in sorted(found, key=os.path.basename, reverse=True):  # DATE is YYYYmmdd-HHMMSS: the newest first
        try:
            with open(f"{directory}/measured_with.json") as file:
                measured_with = dict(json.load(file))
            with open(f"{directory}/sps.csv") as file:
                sps = {row["method"]: float(row["SPS"]) for row in csv.DictReader(file) if row.get("SPS")}
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if measured_with.get("preset") == plan.options.preset:
            return Speeds(where, directory, measured_with, sps)
    return Speeds(where, None, {}, {})


def hms(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    days = f" ({seconds / 86400:.1f} days)" if seconds >= 172800 else ""
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}{days}"


def cost_lines(plan: Plan) -> list[str]:
    """The matrix's runs and env steps, and its wall time with --workers, estimated from the speeds --sps measured."""
    options, runs, total = plan.options, len(plan.runs), plan.options.total_timesteps
    steps = min(total, plan.runs[0].stop_at_step or total)  # what this command trains: each run up to its pause
    paused = f" (up to --stop-at-step, of {total:,} each)" if steps < total else ""
    lines = [f"cost: {runs} runs x {steps:,} steps = {runs * steps:,} env steps{paused}"]
    where, measured, measured_with, sps = newest_speeds(plan)
    if measured is None:
        return lines + [
            f"wall time: unknown, no speed measured with --preset {options.preset} in {where}; "
            f"measure it (a few minutes) with ./benchmark.sh --sps --preset {options.preset} --out {plan.out}, "
            "adding after -- the flags the runs get"
        ]
    count = Counter(run.method for run in plan.runs)
    labels = {name: method_named(name).label for name in plan.methods}  # sps.csv names a method by its label
    known = [name for name in plan.methods if sps.get(labels[name], 0) > 0]
    unmeasured = ", ".join(f"{name} ({count[name]} runs)" for name in plan.methods if name not in known)
    if not known:
        return lines + [f"wall time: unknown, {measured} holds no speed of {unmeasured}; measure it with --sps"]
    seconds = sum(count[name] * steps / sps[labels[name]] for name in known)
    used = ", ".join(f"{labels[name]} {sps[labels[name]]:g} SPS" for name in known)
    flags = " ".join(measured_with.get("flags", [])) or "none"
    load = f"load average {measured_with.get('load', '?')} on {measured_with.get('cores', '?')} cores"
    lines.append(
        f"wall time: about {hms(seconds)} one run at a time, at the speeds measured in {measured} ({used}; flags after -- "
        f"then: {flags}; {load})"
    )
    # Side by side, WORKERS runs take between that time over WORKERS (if each keeps its speed, as runs that leave cores
    # idle do) and all of it (if they share the machine's speed, as runs that keep every core busy do on few cores).
    if options.workers > 1:
        lines.append(
            f"with {options.workers} workers: between {hms(seconds / options.workers)} (if each run keeps that speed beside "
            f"the others) and {hms(seconds)} (if they share it); start-up and evaluation not counted"
        )
    return lines + ([f"wall time leaves out {unmeasured}: no speed measured in {measured}"] if unmeasured else [])


def main(argv: list[str]) -> int:
    if {"-h", "--help", "--dry-run"} & set(argv[: argv.index("--")] if "--" in argv else argv):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `--dry-run | head` ends quietly, as a shell tool's output does
    if argv[:1] == ["slurm-task"]:  # what a task of the job array runs: THREADS PYTHON RUN
        return slurm_task(int(argv[1]), argv[2], Run.from_json(argv[3]))
    if argv[:1] == ["slurm-report"]:  # what the plot job runs, the runs on stdin
        return slurm_report(sys.stdin)
    plan = make_plan(argv)
    options = plan.options
    if options.dry_run and options.slurm:
        print("\n".join(f"# ---- {path} ----\n{script}" for path, script in sbatch_scripts(plan).items()), end="")
        return 0
    if options.dry_run and options.sps:
        print_sps_dry_run(plan)
        return 0
    if options.dry_run:
        print_dry_run(plan)
        return 0
    if not options.slurm and (mistake := python_missing(plan)):  # a Slurm task finds its python on its node
        say(f"error: {mistake}", error=True)
        return 2
    if missing := missing_scripts(plan):
        method, script = missing[0]
        say(f"error: {method} needs {script}, which does not exist (yet); use --methods to leave it out", error=True)
        return 2
    try:
        if options.sps:
            return measure_sps(plan)
        if options.slurm:
            return submit(plan)
        return run_locally(plan)
    except KeyboardInterrupt:  # before the runs started, or after they ended
        say("interrupted", error=True)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
