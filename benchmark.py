"""The PPO-vs-SPRIG benchmark behind `./benchmark.sh`: every (method x env x seed) run of ppo_atari.py /
sprig_ppo_atari.py in its own directory, resumable, locked against a second invocation, on this machine (--workers at
a time) or as a Slurm job array, then plot_results.py on the results. `./benchmark.sh --help` says how to use it.

The file reads top to bottom: the methods table (plot_results.py imports it: a method is one row here), presets and
game sets, one run (its record, its signature, its state on disk, its lock, running it), the options and the run
matrix, then the modes: --dry-run, a local run, --slurm (the sbatch scripts and what their tasks call), --sps and the
cost estimate. Standard library only (Python 3.8 or newer), so it runs before any environment for the training
scripts exists; PYTHON (default: python) names the python that runs those scripts and plot_results.py.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

REPO_DIR = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------------------------------------------
# The methods: one row each, the only place a method is defined. plot_results.py imports this table to name and
# colour each method's curves (a run's method is its exp_name), and reads --sps speeds back by the same label. A second
# row for a script needs an --exp-name of its own, or plot_results.py could not tell its runs apart.
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    name: str
    """what --methods calls it; its runs' directories are OUT/PRESET/ENV/NAME/seedSEED"""
    script: str
    """its training script, beside this file"""
    flags: tuple[str, ...]
    """the flags that make it, besides the script's defaults (an --exp-name names its runs, and so its curves)"""
    label: str
    """its name in plot_results.py's figures and tables, and in the speed table of --sps"""
    colour: str
    """its colour in every figure"""
    what: str
    """what it is, for --help"""

    @property
    def exp_name(self) -> str:
        """Its runs' exp_name: its --exp-name, else its script's file stem (the scripts' default)."""
        values = parse_flags(self.flags).get("--exp-name")
        return values[-1] if values else os.path.splitext(self.script)[0]


METHODS = (
    Method(
        name="ppo",
        script="ppo_atari.py",
        flags=(),
        label="PPO",
        colour="tab:blue",
        what="CleanRL's PPO with the Nature CNN",
    ),
    Method(
        name="sprig",
        script="sprig_ppo_atari.py",
        flags=(),
        label="SPRIG",
        colour="tab:orange",
        what="SPRIG, its default leader utility",
    ),
    Method(
        name="sprig-pg",
        script="sprig_ppo_atari.py",
        flags=("--leader-utility", "pg", "--exp-name", "sprig-pg"),
        label="SPRIG-pg",
        colour="tab:red",
        what="SPRIG with Algorithm 1's printed policy term as the leader's utility",
    ),
    Method(
        name="sprig-implicit",
        script="sprig_ppo_atari.py",
        flags=("--leader-gradient", "implicit", "--exp-name", "sprig-implicit"),
        label="SPRIG-implicit",
        colour="tab:purple",
        what="SPRIG whose leader follows its total derivative through the follower",
    ),
    Method(
        name="sprig-joint",
        script="sprig_ppo_atari.py",
        flags=("--update", "joint", "--exp-name", "sprig-joint"),
        label="PPO on SPRIG's network",
        colour="tab:green",
        what="SPRIG's network trained as plain PPO: the control that tells the network's effect from the game's",
    ),
    Method(
        name="sprig-cnn",
        script="sprig_ppo_atari.py",
        flags=("--perception", "nature", "--exp-name", "sprig-cnn"),
        label="SPRIG's game on PPO's CNN",
        colour="tab:brown",
        what="SPRIG's two-stage game on ppo_atari.py's Nature CNN: the game without SPRIG's network",
    ),
    Method(
        name="sprig-scaled",
        script="sprig_ppo_atari.py",
        flags=("--perception", "attention-scaled", "--exp-name", "sprig-scaled"),
        label="SPRIG, features at the CNN's scale",
        colour="tab:pink",
        what="SPRIG on its network with the features starting at the Nature CNN's scale (the last LayerNorm's gain 0.1)",
    ),
    Method(
        name="sprig-scaled-joint",
        script="sprig_ppo_atari.py",
        flags=("--perception", "attention-scaled", "--update", "joint", "--exp-name", "sprig-scaled-joint"),
        label="PPO on SPRIG's network, features at the CNN's scale",
        colour="tab:olive",
        what="that network trained as plain PPO: its control, beside sprig-joint",
    ),
)


def methods_table_mistake() -> str | None:
    """The first row of METHODS that would mix two methods up (a name, exp_name or label given twice), in one line;
    None if there is none. benchmark.sh and plot_results.py both refuse to start with one."""
    for key in ("name", "exp_name", "label"):
        values = [getattr(method, key) for method in METHODS]
        twice = [value for value in values if values.count(value) > 1]
        if twice:
            return f"benchmark.py's METHODS: two methods with the {key} {twice[0]} (give each its own)"
    return None


def method_named(name: str) -> Method | None:
    return next((method for method in METHODS if method.name == name), None)


# ---------------------------------------------------------------------------------------------------------------
# Presets: flags added to every run. `paper` maps the paper's Table 1 (Martinez-Lopez, Chen & Lu, arXiv 2502.14264;
# docs/design.md, section "The paper's setup (Table 1, Figure 2)") to both methods equally:
# 8 envs x 256 steps = rollouts of 2048, 32 minibatches of 64, lr 1e-4, clip 0.2, episodes cut at 10000 steps.
# The remaining Table 1 values (4 epochs, gamma, GAE lambda, coefficients) are already the scripts' defaults.
# ---------------------------------------------------------------------------------------------------------------
PRESETS = {
    "cleanrl": (),
    "paper": ("--num-envs", "8", "--num-steps", "256", "--num-minibatches", "32", "--learning-rate", "1e-4")
    + ("--clip-coef", "0.2", "--max-episode-steps", "10000"),
}

# Game sets of --games, as NoFrameskip-v4 ids. atari5: the five games whose scores best predict the median
# human-normalised score over all 57 (Aitchison, Sweetser & Hutter, "Atari-5: Distilling the Arcade Learning
# Environment down to Five Games", 2022); atari3: the three games the same paper sets aside as a validation set,
# for tuning. plot_results.py normalises every one of them (its table holds all 57).
GAME_SETS = {
    "atari5": tuple(f"{game}NoFrameskip-v4" for game in ("BattleZone", "DoubleDunk", "NameThisGame", "Phoenix", "Qbert")),
    "atari3": tuple(f"{game}NoFrameskip-v4" for game in ("BattleZone", "NameThisGame", "Phoenix")),
}


# ---------------------------------------------------------------------------------------------------------------
# A run: its record, and its signature. A run's command is an argument list: PYTHON, its script, then its flags.
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    method: str
    """its row of METHODS (sprig for a swept run): what it costs"""
    name: str
    """its directory under ENV: the method, or sprig_FLAG=VALUE in a sweep"""
    env_id: str
    seed: str
    preset: str
    script: str
    """the training script's path"""
    flags: tuple[str, ...]
    """the script's flags: those that make its results (env, seed, steps, method, preset), then how it runs
    (MACHINERY_FLAGS), then the flags after --"""
    directory: str
    """OUT/PRESET/ENV/NAME/seedSEED, where it runs"""

    @property
    def label(self) -> str:
        return f"{self.name} {self.env_id} {self.seed}"

    def command(self, python: str) -> list[str]:
        return [python, self.script, *self.flags]


MACHINERY_FLAGS = ("--checkpoint-every", "--stop-at-step", "--resume", "--async-envs", "--no-async-envs")
MACHINERY_FLAGS += ("--cudagraphs", "--no-cudagraphs")
"""flags that change how a run goes, not what it computes: how often it checkpoints, where it pauses, what it resumes
from, whether its envs step in subprocesses (checkpoints are exact either way), whether its GPU work is replayed from
CUDA graphs (a checkpoint resumes under either). They stay out of its signature."""


def flag_groups(flags) -> list[tuple[str, tuple[str, ...]]]:
    """[(flag, its values), ...] in order, as the scripts read them: `--x=1` is `--x 1`, a flag without values is a
    switch, words before any flag are the values of ''."""
    groups: list[tuple[str, list[str]]] = []
    for word in flags:
        if word.startswith("--"):
            name, equals, value = word.partition("=")
            groups.append((name, [value] if equals else []))
        elif groups:
            groups[-1][1].append(word)
        else:
            groups.append(("", [word]))
    return [(name, tuple(values)) for name, values in groups]


def parse_flags(flags) -> dict[str, tuple[str, ...]]:
    """{flag: its values}; a flag given twice has its last values, as the scripts' parser keeps."""
    return dict(flag_groups(flags))


@dataclass(frozen=True)
class Signature:
    """What a run computes: its script's file name and its flags, parsed (so `--x 1 --y 2`, `--y 2 --x 1` and
    `--x=1 --y 2` are one signature), MACHINERY_FLAGS left out. A run's `started` and `done` hold it as one line, the
    script's name and its flags (signature_line), as earlier versions of benchmark.sh wrote it too."""

    script: str
    flags: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def of(cls, script: str, flags) -> Signature:
        kept = {name: values for name, values in flag_groups(flags) if name not in MACHINERY_FLAGS}
        return cls(os.path.basename(script), tuple(sorted(kept.items())))

    @classmethod
    def read(cls, line: str) -> Signature:
        try:
            words = shlex.split(line)
        except ValueError:  # an unmatched quote: the words as they stand
            words = line.split()
        return cls.of(words[0], words[1:]) if words else cls("", ())


def signature_line(command: list[str]) -> str:
    """The line `started` and `done` hold for a run of COMMAND (PYTHON, script, flags): `ppo_atari.py --env-id ...`,
    its flags in their order, without those of MACHINERY_FLAGS."""
    words = [os.path.basename(command[1])]
    for name, values in flag_groups(command[2:]):
        if name not in MACHINERY_FLAGS:
            words += [name, *values] if name else values
    return shlex.join(words)


def stop_at_step(command: list[str]) -> int | None:
    """COMMAND's --stop-at-step, where its run pauses; None for none."""
    values = parse_flags(command[2:]).get("--stop-at-step")
    return int(values[-1]) if values else None


# ---------------------------------------------------------------------------------------------------------------
# A run's directory: its state, its lock. Each run has OUT/PRESET/ENV/NAME/seedSEED/ to itself, holding the training
# script's runs/ (TensorBoard and checkpoint.pt), log.txt, command.txt, `started` (its signature), and once it
# finished, `done` (the same). A run paused at --stop-at-step holds `paused` (that step).
# ---------------------------------------------------------------------------------------------------------------
def read_text(path: str) -> str | None:
    """The file's text without its trailing newlines, None if it cannot be read."""
    try:
        with open(path) as file:
            return file.read().rstrip("\n")
    except OSError:
        return None


def write_text(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text + "\n")


def latest_checkpoint(directory: str) -> str | None:
    """The newest runs/*/checkpoint.pt of the run in DIRECTORY, if any."""
    checkpoints = glob.glob(os.path.join(glob.escape(directory), "runs", "*", "checkpoint.pt"))
    return max(checkpoints, key=os.path.getmtime, default=None)


def run_state(directory: str, signature: Signature, stop: int | None) -> str:
    """What a run there needs, in one word. new; done; conflict (done, with other flags); paused (paused by
    --stop-at-step at a step of at least STOP: nothing to do until STOP grows); resume (a checkpoint of a run started
    with SIGNATURE; one started with other flags is restarted instead, as the script would refuse to resume it);
    clean (an unfinished run's output without a checkpoint, removed before it starts)."""
    done = read_text(os.path.join(directory, "done"))
    if done is not None:
        return "done" if done.strip() == "" or Signature.read(done) == signature else "conflict"
    started = read_text(os.path.join(directory, "started"))
    if started is not None and Signature.read(started) == signature and latest_checkpoint(directory):
        paused = read_text(os.path.join(directory, "paused"))
        if stop is not None and paused and paused.strip().isdigit() and int(paused) >= stop:
            return "paused"
        return "resume"
    if os.path.isdir(directory) and any(entry != ".lock" for entry in os.listdir(directory)):
        return "clean"
    return "new"


def clean_partial_run(directory: str) -> None:
    """Remove what a killed or failed run left (runs/, log.txt, ...), keeping the lock."""
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        if entry == ".lock":
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


# The lock is a directory (mkdir is atomic) holding `owner`: "host pid slurm_job process". A lock whose owner is
# dead (same host and pid gone or taken by another process since, or a Slurm job no longer in the queue) is stale and
# taken over. `process` (the boot and the pid's start time) tells a pid reused after a restart from the owner.
# slurm_job is the array task (ARRAYID_TASK) for a task of the sbatch script: a lock of this very task was left by
# an earlier start of it (killed before it released the lock, then requeued, maybe onto another node, where the
# owner's job is still in the queue: it is this one), and Slurm runs one start of a task at a time, so it is stale.
def slurm_job() -> str:
    """The Slurm job this runs in, as squeue and scontrol name it: ARRAYID_TASK in an array task; '-' outside."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or "-"


def hostname() -> str:
    """This machine's name, as `hostname` prints it."""
    return os.uname().nodename


def process_identity(pid: int) -> str:
    """'boot_id:start time' of a process, the same only for the same process of the same boot; '' if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            start_time = file.read().rsplit(") ", 1)[1].split()[19]  # after the command name, which may hold spaces
    except (OSError, IndexError):
        return ""
    return f"{read_text('/proc/sys/kernel/random/boot_id') or ''}:{start_time}"


def lock_is_stale(lock: str) -> bool:
    owner = (read_text(os.path.join(lock, "owner")) or "").split("\n")[0].split()
    if not owner:
        return False  # no owner yet: being created right now
    host, pid, job, process = (owner + ["", "", ""])[:4]
    if "_" in job and job == slurm_job():
        return True  # this array task's own lock, from an earlier start of it
    if host == hostname():
        if not pid.isdigit() or not process_alive(int(pid)) or (process and process_identity(int(pid)) != process):
            return True
    if job not in ("", "-") and shutil.which("squeue"):
        # Gone from the queue: squeue answers nothing, or (once Slurm has purged the job) "Invalid job id". Any other
        # failure (the controller down, say) tells nothing, and the lock stays.
        answer = subprocess.run(["squeue", "-h", "-j", job], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if answer.returncode == 0:
            return answer.stdout.strip("\n") == ""
        return "Invalid job id" in answer.stdout
    return False


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


def acquire_lock(directory: str) -> bool:
    """Take the run's lock; False if another live process holds it."""
    lock, aside = os.path.join(directory, ".lock"), os.path.join(directory, f".lock.stale.{os.getpid()}")
    try:
        os.mkdir(lock)
    except FileExistsError:
        if not lock_is_stale(lock):
            return False
        stale_owner = read_text(os.path.join(lock, "owner"))
        if stale_owner is None:
            return False
        # Take it over by renaming it aside, which only one of two competing invocations can do; if what we moved
        # is no longer the stale lock (someone took it over just before us), give it back.
        try:
            os.rename(lock, aside)
        except OSError:
            return False
        if read_text(os.path.join(aside, "owner")) != stale_owner:
            try:
                os.rename(aside, lock)
            except OSError:
                pass
            return False
        shutil.rmtree(aside, ignore_errors=True)
        try:
            os.mkdir(lock)
        except OSError:
            return False
    pid = os.getpid()
    write_text(os.path.join(lock, "owner"), f"{hostname()} {pid} {slurm_job()} {process_identity(pid)}")
    return True


def release_lock(directory: str) -> None:
    shutil.rmtree(os.path.join(directory, ".lock"), ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# Running one run, on this machine or in a Slurm task. How it ended is its script's exit status: 0 finished (marked
# done), 3 stopped by a signal after writing its checkpoint (interrupted: resumed next time), 4 paused at
# --stop-at-step with its checkpoint (paused), any other failed.
# ---------------------------------------------------------------------------------------------------------------
OUTPUT = threading.Lock()


def say(text: str, error: bool = False) -> None:
    """One line to stdout (stderr if ERROR), whole even when several runs end at once."""
    stream = sys.stderr if error else sys.stdout
    with OUTPUT:
        stream.write(text + "\n")
        stream.flush()


class RunControl:
    """How a signal handler stops the run that run_one runs, or is about to start: stop() sends it SIGTERM (its
    process group, when it has one of its own), and it finishes its iteration, writes its checkpoint and exits 3;
    asked before it started, run_one does not start it (interrupted, resumed next time)."""

    def __init__(self, own_process_group: bool):
        self.own_process_group = own_process_group
        self.process: subprocess.Popen | None = None
        self.stopped = False

    def stop(self, signum: int = signal.SIGTERM) -> None:
        self.stopped = True
        process = self.process
        if process is not None:
            try:
                (os.killpg if self.own_process_group else os.kill)(process.pid, signum)
            except (ProcessLookupError, PermissionError):  # it has just ended
                pass


def run_one(directory: str, command: list[str], threads: int, control: RunControl, environment=None) -> str:
    """Run COMMAND (PYTHON, script, flags) in DIRECTORY unless it is done there, with THREADS threads and ENVIRONMENT's
    variables; return how it went: ran, skipped, paused, locked, conflict, interrupted or failed. The signature stored
    in `done` skips a finished run only for a rerun asking for the same thing; a run killed earlier resumes from its
    checkpoint if it was started (`started`) with the same signature. A run paused at its --stop-at-step records it in
    `paused`, and is left as it is until --stop-at-step grows."""
    start = time.monotonic()
    signature, stop = Signature.of(command[1], command[2:]), stop_at_step(command)
    os.makedirs(directory, exist_ok=True)
    state = run_state(directory, signature, stop)
    if state not in ("done", "conflict", "paused"):
        if not acquire_lock(directory):
            owner = read_text(os.path.join(directory, ".lock", "owner")) or ""
            say(
                f"{directory}: locked by another live run ({owner}); left to it (if that run is dead, remove "
                f"{directory}/.lock: a lock written on another machine, or before this one's hostname changed, is "
                "never taken for stale)"
            )
            return "locked"
        state = run_state(directory, signature, stop)  # again under the lock: another invocation may have finished it
        if state in ("done", "conflict", "paused"):
            release_lock(directory)
    if state == "done":
        return "skipped"
    if state == "paused":
        return "paused"
    if state == "conflict":
        done = read_text(os.path.join(directory, "done"))
        say(f"error: {directory} finished with other flags ({done}); delete it or use another --out", error=True)
        return "conflict"
    resume = []
    if state == "resume":
        checkpoint = latest_checkpoint(directory)
        resume = ["--resume", checkpoint]
        say(f"{directory}: resuming the unfinished earlier run from {checkpoint}")
    elif state == "clean":
        say(
            f"{directory}: unfinished earlier run (no 'done' marker, no checkpoint): removing its partial output and "
            "restarting it"
        )
        clean_partial_run(directory)
    if control.stopped:  # asked to stop before it started: it does not start, and is resumed next time
        release_lock(directory)
        return "interrupted"
    try:
        return start_and_wait(directory, [*command, *resume], threads, control, environment or {}, start)
    finally:
        release_lock(directory)


def start_and_wait(directory, command, threads, control, environment, start) -> str:
    """run_one's second half: start the run (stdout and stderr appended to its log.txt), wait for it, mark it."""
    if os.path.exists(os.path.join(directory, "paused")):
        os.remove(os.path.join(directory, "paused"))
    write_text(os.path.join(directory, "started"), signature_line(command))
    say(f"{directory}: started (log: {directory}/log.txt)")
    variables = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **environment}
    assignments = [f"{name}={value}" for name, value in variables.items()]
    write_text(
        os.path.join(directory, "command.txt"), f"cd {shlex.quote(directory)} && {shlex.join(['env', *assignments, *command])}"
    )
    with open(os.path.join(directory, "log.txt"), "a") as log:
        try:
            control.process = subprocess.Popen(
                command,
                cwd=directory,
                env={**os.environ, **variables},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=control.own_process_group,
            )
        except OSError as error:  # as `env` would say, with its exit status
            log.write(f"benchmark.py: {command[0]}: {error.strerror}\n")
            control.process, returncode = None, 127
        else:
            if control.stopped:  # a stop that came before the process was known
                control.stop()
            returncode = control.process.wait()
            control.process = None
    returncode = 128 - returncode if returncode < 0 else returncode  # killed by signal N: 128 + N, as a shell says
    if returncode == 0:
        write_text(os.path.join(directory, "done"), signature_line(command))
        return "ran"
    if returncode == 3:  # stopped by a signal after writing its checkpoint: not done, resumed next time
        return "interrupted"
    if returncode == 4:  # at --stop-at-step, with its checkpoint: not done, goes on when asked for more steps
        stop = stop_at_step(command)
        if stop is not None:
            write_text(os.path.join(directory, "paused"), str(stop))
        return "paused"
    say(
        f"{directory}: FAILED (exit {returncode}) after {int(time.monotonic() - start)} s; see {directory}/log.txt", error=True
    )
    return "failed"


# ---------------------------------------------------------------------------------------------------------------
# Options. Each --option takes its value as the next word or after '=' (--out=DIR); the flags after -- go to every run.
# ---------------------------------------------------------------------------------------------------------------
VALUE_OPTIONS = tuple(
    "--methods --env-ids --games --seeds --total-timesteps --stop-at-step --workers --checkpoint-every --out --preset "
    "--sweep --sps-iterations --sps-from --partition --time --time-margin --gpus --cpus-per-task".split()
)
"""the options that take a value, each an Options field of its name (--sweep adds to a list)"""
SWITCHES = ("--quick", "--dry-run", "--no-plot", "--slurm", "--sps", "--no-mps")


@dataclass
class Options:
    """The command line as given, each value as written (the defaults --quick changes empty until it has run)."""

    methods: str = "ppo sprig"
    env_ids: str = "BeamRiderNoFrameskip-v4"
    env_ids_given: bool = False
    games: str = ""
    seeds: str = ""
    total_timesteps: str = ""
    stop_at_step: str = ""
    workers: str = ""
    checkpoint_every: str = "25"
    out: str = ""
    preset: str = "cleanrl"
    sweep: list = field(default_factory=list)
    sps_iterations: str = "4"
    sps_from: str = ""
    partition: str = ""
    time: str = "24:00:00"
    time_margin: str = "300"
    gpus: str = "1"
    cpus_per_task: str = "4"
    quick: bool = False
    dry_run: bool = False
    no_plot: bool = False
    slurm: bool = False
    sps: bool = False
    no_mps: bool = False
    extra_flags: list = field(default_factory=list)


def die(message: str):
    """A one-line error for a usage mistake: exit 2."""
    say(f"error: {message}", error=True)
    raise SystemExit(2)


def parse_options(argv: list[str]) -> Options:
    options = Options()
    words = list(argv)
    while words:
        option = words.pop(0)
        if option.startswith("--") and "=" in option[2:]:  # --option=value is the same as --option value
            option, value = option.split("=", 1)
            words.insert(0, value)
        if option in ("-h", "--help"):
            print(usage(), end="")
            raise SystemExit(0)
        if option in VALUE_OPTIONS:
            if not words:
                die(f"{option} needs a value (see --help)")
            value, attribute = words.pop(0), option[2:].replace("-", "_")
            if option == "--sweep":
                options.sweep.append(value)
            else:
                setattr(options, attribute, value)
            options.env_ids_given |= option == "--env-ids"
        elif option in SWITCHES:
            setattr(options, option[2:].replace("-", "_"), True)
        elif option == "--":
            options.extra_flags = words
            break
        else:
            die(f"unknown option '{option}' (see --help)")
    return options


# ---------------------------------------------------------------------------------------------------------------
# The plan: the options checked, and the run matrix, seed-major so that a benchmark stopped halfway has every method
# at the same number of seeds.
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    options: Options
    methods: list[str]
    """the methods run (sprig alone in a sweep)"""
    env_ids: list[str]
    seeds: list[str]
    total_timesteps: int
    stop_at_step: int | None
    workers: int
    cores: int
    threads: int
    """per run: the cores split between the workers"""
    out: str
    results_dir: str
    """OUT/PRESET"""
    sweep_summary: str
    """'alpha-coop: 0.0 0.3; ...' for the dry run; '' without --sweep"""
    swept_values: int
    time_margin: int
    plot_time_limit: str
    cuda: bool = False
    """a local run on a machine with an NVIDIA GPU (nvidia-smi -L lists one), runs not given --no-cuda"""
    mps: Mps | None = None
    """the MPS control daemon its runs share the GPU through"""
    runs: list[Run] = field(default_factory=list)

    @property
    def python(self) -> str:
        return os.environ.get("PYTHON") or "python"

    def plot_commands(self) -> list[tuple[list[str], str]]:
        """The plots at the end and what each makes: plot_results.py on the results, and after a sweep its trade-off."""
        plot = os.path.join(REPO_DIR, "plot_results.py")
        commands = [
            (
                [self.python, plot, self.results_dir],
                f"figure: {self.results_dir}/figure2.png, table: {self.results_dir}/results.md",
            )
        ]
        if self.swept_values:
            commands.append(
                (
                    [self.python, plot, "tradeoff", self.results_dir],
                    f"trade-off: {self.results_dir}/tradeoff_FLAG.png and .md for each swept flag",
                )
            )
        return commands


def is_count(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) > 0


def is_whole(text: str) -> bool:
    return text.isascii() and text.isdigit()


ENV_ID = re.compile(r"ALE/[A-Za-z]+-v5|[A-Z][A-Za-z]*(NoFrameskip|Deterministic)?-v[04]")
"""the id shapes ale-py registers; the scripts check the rest (a typo, say) themselves"""
SWEPT_FLAG = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def slurm_seconds(limit: str) -> int | None:
    """A Slurm time limit (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in seconds, 0 for none; None if it is not one."""
    if re.fullmatch(r"INFINITE|UNLIMITED|infinite|unlimited", limit):
        return 0
    days = hours = minutes = seconds = "0"
    if match := re.fullmatch(r"([0-9]+)-([0-9]+)(:([0-9]+)(:([0-9]+))?)?", limit):
        days, hours, minutes, seconds = match[1], match[2], match[4] or "0", match[6] or "0"
    elif match := re.fullmatch(r"([0-9]+):([0-9]+):([0-9]+)", limit):
        hours, minutes, seconds = match[1], match[2], match[3]
    elif match := re.fullmatch(r"([0-9]+)(:([0-9]+))?", limit):
        minutes, seconds = match[1], match[3] or "0"
    else:
        return None
    return ((int(days) * 24 + int(hours)) * 60 + int(minutes)) * 60 + int(seconds)


def number_of_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def absolute(path: str) -> str:
    """PATH from the directory the user is in (as the shell names it), since every run starts in its own."""
    if path.startswith("/"):
        return path
    here = os.environ.get("PWD", "")
    try:
        here = here if here.startswith("/") and os.path.samefile(here, ".") else os.getcwd()
    except OSError:
        here = os.getcwd()
    return f"{here}/{path[2:] if path.startswith('./') else path}"


def make_plan(options: Options) -> Plan:
    """Check the options, one clear line for the first mistake (exit 2), and lay out the run matrix."""
    if options.quick:  # --quick only fills in what was not given explicitly
        options.seeds = options.seeds or "1 2"
        options.total_timesteps = options.total_timesteps or "50000"
        options.workers = options.workers or "2"
        options.out = options.out or "benchmark_results_quick"  # so that 50k-step runs never stand in for the full ones
    options.seeds = options.seeds or "1 2 3 4 5"
    options.total_timesteps = options.total_timesteps or "10000000"
    options.workers = options.workers or "1"
    options.out = options.out or "benchmark_results"
    env_ids = options.env_ids.split()
    if options.games:
        if options.env_ids_given:
            die(f"--games and --env-ids do not go together: --games {options.games} names the env ids")
        if options.games not in GAME_SETS:
            die(f"unknown game set '{options.games}' (known: {', '.join(GAME_SETS)})")
        env_ids = list(GAME_SETS[options.games])
    methods, seeds = options.methods.split(), options.seeds.split()
    if not methods:
        die("--methods is empty")
    for method in methods:
        if method_named(method) is None:
            die(f"unknown method '{method}' (known: {', '.join(method.name for method in METHODS)})")
    if not env_ids:
        die("--env-ids is empty")
    for env_id in env_ids:
        if not ENV_ID.fullmatch(env_id):
            die(f"--env-ids: '{env_id}' is not an Atari game id (GameNoFrameskip-v4 or ALE/Game-v5, e.g. ALE/BeamRider-v5)")
    if not seeds:
        die("--seeds is empty")
    for seed in seeds:
        if not is_whole(seed):
            die(f"seed '{seed}' is not a non-negative integer")
    if options.preset not in PRESETS:
        die(f"unknown preset '{options.preset}' (known: {', '.join(PRESETS)})")
    if not is_count(options.total_timesteps):
        die(f"--total-timesteps must be a positive integer, got '{options.total_timesteps}'")
    if options.stop_at_step and not is_count(options.stop_at_step):
        die(f"--stop-at-step must be a positive integer, got '{options.stop_at_step}'")
    if not is_whole(options.checkpoint_every):
        die(f"--checkpoint-every must be a non-negative integer, got '{options.checkpoint_every}'")
    if not is_count(options.workers):
        die(f"--workers must be a positive integer, got '{options.workers}'")
    if not is_whole(options.gpus):
        die(f"--gpus must be a non-negative integer, got '{options.gpus}'")
    if not is_count(options.cpus_per_task):
        die(f"--cpus-per-task must be a positive integer, got '{options.cpus_per_task}'")
    time_seconds = slurm_seconds(options.time)
    if time_seconds is None:
        die(f"--time: '{options.time}' is not a Slurm time limit (MINUTES, H:MM:SS, DAYS-HH:MM:SS, DAYS-HH, ...)")
    if not is_whole(options.time_margin) or int(options.time_margin) > 65535:
        die(f"--time-margin must be a whole number of seconds from 0 to 65535, got '{options.time_margin}'")
    time_margin = int(options.time_margin)
    if time_seconds and time_margin >= time_seconds:
        die(
            f"--time-margin {time_margin} is not shorter than --time {options.time} ({time_seconds} s): no time would be "
            "left to train"
        )
    # MPS and --sps-from are for a run on this machine, and its cost estimate.
    if options.no_mps and (options.slurm or options.sps):
        mode = "--slurm" if options.slurm else "--sps"
        why = "a Slurm task has its GPU to itself" if options.slurm else "--sps runs one method at a time"
        die(f"--no-mps and {mode} do not go together: {why}, without MPS")
    if options.sps_from:
        if options.sps or options.slurm:
            mode = "--sps" if options.sps else "--slurm"
            why = "--sps measures this machine's speeds" if options.sps else "--slurm estimates no wall time"
            die(f"--sps-from and {mode} do not go together: {why}")
        if not os.path.isdir(options.sps_from):
            die(f"--sps-from: '{options.sps_from}' is not a directory (an --out of --sps, or its sps/DATE/)")
    preset_flags = PRESETS[options.preset]
    variants = sweep_variants(options, preset_flags, methods)
    swept_values = len(variants) if options.sweep else 0
    if swept_values:
        methods = ["sprig"]
    out = absolute(options.out)
    cores = number_of_cores()
    workers = int(options.workers)
    plan = Plan(
        options=options,
        methods=methods,
        env_ids=env_ids,
        seeds=seeds,
        total_timesteps=int(options.total_timesteps),
        stop_at_step=int(options.stop_at_step) if options.stop_at_step else None,
        workers=workers,
        cores=cores,
        threads=max(1, cores // workers),
        out=out,
        results_dir=f"{out}/{options.preset}",
        sweep_summary="; ".join(f"{flag}: {' '.join(values)}" for flag, values in sweep_specs(options.sweep)),
        swept_values=swept_values,
        time_margin=time_margin,
        plot_time_limit=options.time if 0 < time_seconds < 1800 else "0:30:00",  # a partition may forbid longer
    )
    local = not (options.slurm or options.sps)
    plan.cuda = local and cuda_device_listed() and parse_flags(options.extra_flags).get("--no-cuda") is None
    plan.mps = mps_for(plan)
    plan.runs = run_matrix(plan, variants, preset_flags)
    directories = [run.directory for run in plan.runs]
    twice = sorted({directory for directory in directories if directories.count(directory) > 1})
    if twice:
        die(f"a method, env id or seed is listed twice: {twice[0]}")
    return plan


def sweep_specs(specs: list[str]) -> list[tuple[str, list[str]]]:
    return [(spec.split("=", 1)[0], spec.split("=", 1)[1].split()) for spec in specs]


def sweep_variants(options: Options, preset_flags, methods) -> list[tuple[str, str, tuple[str, ...]]]:
    """What each (env, seed) runs: (method, its directory's name, its flags), one per method, or with --sweep one per
    swept (flag, value), all of them sprig. Each --sweep "FLAG=V1 V2 ..." varies one flag of sprig_ppo_atari.py, the
    others at their defaults; a swept run is named sprig_FLAG=VALUE (its directory and its --exp-name), which
    plot_results.py reads back as FLAG and VALUE."""
    swept: list[tuple[str, str]] = []
    for spec in options.sweep:
        if "=" not in spec:
            die(f"--sweep needs FLAG=VALUE [VALUE ...], e.g. --sweep \"alpha-coop=0.0 0.3 0.7 1.0\"; got '{spec}'")
        ((flag, values),) = sweep_specs([spec])
        if not SWEPT_FLAG.fullmatch(flag):
            die(f"--sweep: '{flag}' is not a flag name (a flag of sprig_ppo_atari.py without its dashes, e.g. alpha-coop)")
        if flag in ("env-id", "seed", "total-timesteps", "exp-name"):
            die(f"--sweep: --{flag} is set by benchmark.sh itself and cannot be swept")
        for word in (*preset_flags, *options.extra_flags):
            if word.split("=", 1)[0] in (f"--{flag}", "--exp-name"):
                die(
                    f"--sweep {flag}: {word} is also given by the preset or after --; a swept run sets --{flag} and "
                    "--exp-name itself"
                )
        if not values:
            die(f'--sweep {flag}: no values (e.g. --sweep "{flag}=0.1 0.2")')
        for value in values:
            if not NUMBER.fullmatch(value):
                die(f"--sweep {flag}: '{value}' is not a number")
            # 0.3 and .30 would be two runs of the same value: compare the numbers, not the spellings.
            if any(other == flag and float(earlier) == float(value) for other, earlier in swept):
                die(f"--sweep {flag}: the value {value} is listed twice")
            swept.append((flag, value))
    if not swept:
        return [(method, method, method_named(method).flags) for method in methods]
    if "sprig" not in methods:
        die(f"--sweep runs only sprig, and --methods '{options.methods}' leaves it out")
    if options.sps:
        die("--sweep and --sps do not go together (measure speed without --sweep)")
    return [
        ("sprig", f"sprig_{flag}={value}", (f"--{flag}", value, "--exp-name", f"sprig_{flag}={value}"))
        for flag, value in swept
    ]


def run_matrix(plan: Plan, variants, preset_flags) -> list[Run]:
    """Every (seed, env, variant) run. How often a run checkpoints, where it pauses and whether its envs step in
    subprocesses (MACHINERY_FLAGS) come after the flags that make its results, the flags after -- last."""
    options = plan.options
    machinery = ["--checkpoint-every", options.checkpoint_every]
    if options.stop_at_step:
        machinery += ["--stop-at-step", options.stop_at_step]
    given = parse_flags(options.extra_flags)
    if plan.cuda and "--async-envs" not in given and "--no-async-envs" not in given:
        machinery.append("--async-envs")  # a run on a GPU mostly waits on it: its envs step on the idle cores
    runs = []
    for seed in plan.seeds:
        for env_id in plan.env_ids:
            for method, name, variant_flags in variants:
                flags = ["--env-id", env_id, "--seed", seed, "--total-timesteps", options.total_timesteps, *variant_flags]
                flags += preset_flags
                if options.slurm and int(options.gpus) == 0:
                    flags.append("--no-cuda")
                runs.append(
                    Run(
                        method=method,
                        name=name,
                        env_id=env_id,
                        seed=seed,
                        preset=options.preset,
                        script=os.path.join(REPO_DIR, method_named(method).script),
                        flags=(*flags, *machinery, *options.extra_flags),
                        directory=f"{plan.results_dir}/{env_id}/{name}/seed{seed}",
                    )
                )
    return runs


def check_scripts_exist(plan: Plan) -> None:
    for method in plan.methods:
        script = os.path.join(REPO_DIR, method_named(method).script)
        if not os.path.isfile(script):
            die(f"{method} needs {script}, which does not exist (yet); use --methods to leave it out")


# ---------------------------------------------------------------------------------------------------------------
# The GPU of a local run. Measured on one H200 with 16 cores, ten paper-preset runs at once: without MPS, ten CUDA
# contexts time-slice the GPU (2,655 SPS in all); with NVIDIA's Multi-Process Service they share it (5,970 SPS). And
# with the GPU doing the compute, a run's process mostly waits on it: envs stepping in subprocesses (--async-envs) use
# the idle cores, 12% faster for all ten than in-process envs, which the scripts choose below 8 threads a run.
# ---------------------------------------------------------------------------------------------------------------
MPS_DEFAULT_PIPE_DIRECTORY = "/tmp/nvidia-mps"
MPS_PIPE_DIRECTORY_MAX = 80
"""bytes: MPS's UNIX sockets live in its pipe directory, and a socket's path holds at most 107; a longer OUT puts
them in /tmp/sprig-mps-PID instead"""


def cuda_device_listed() -> bool:
    """Whether nvidia-smi -L lists a GPU (without torch, which this file never imports) that CUDA_VISIBLE_DEVICES does
    not hide ('' or -1 hides them all)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip() in ("", "-1") or shutil.which("nvidia-smi") is None:
        return False
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listing.returncode == 0 and any(line.startswith("GPU ") for line in listing.stdout.splitlines())


@dataclass
class Mps:
    """The MPS control daemon a local run's runs share the GPU through: one already running (a `control` pipe in
    $CUDA_MPS_PIPE_DIRECTORY, default /tmp/nvidia-mps), used and left running; or one started for these runs, its
    pipes (see MPS_PIPE_DIRECTORY_MAX) and logs in OUT/mps/, stopped when the last run ends (also after Ctrl-C or a
    failed run)."""

    pipe_directory: str
    log_directory: str
    ours: bool
    """started by this invocation, which stops it"""
    pipes_in_tmp: bool = False
    """its pipes in /tmp/sprig-mps-PID, removed once it has stopped"""

    @property
    def environment(self) -> dict[str, str]:
        """What the daemon and every run get: the daemon's directories (nothing for one already running: the runs
        find it where this invocation did)."""
        if not self.ours:
            return {}
        return {"CUDA_MPS_PIPE_DIRECTORY": self.pipe_directory, "CUDA_MPS_LOG_DIRECTORY": self.log_directory}

    def describe(self) -> str:
        if self.ours:
            return (
                f"MPS: the runs share the GPU through an MPS control daemon started for them (pipes in "
                f"{self.pipe_directory}, logs in {self.log_directory}), stopped after the last run; --no-mps: without"
            )
        return f"MPS: the runs share the GPU through the MPS control daemon already running (pipes in {self.pipe_directory})"

    def start(self) -> bool:
        if not self.ours:
            return True
        for directory in (self.pipe_directory, self.log_directory):
            os.makedirs(directory, exist_ok=True)
        started = subprocess.run(["nvidia-cuda-mps-control", "-d"], env={**os.environ, **self.environment})
        if started.returncode != 0:
            say(
                f"warning: nvidia-cuda-mps-control -d failed (exit {started.returncode}): the runs time-slice the GPU",
                error=True,
            )
        return started.returncode == 0

    def stop(self) -> None:
        if self.ours:
            stopped = subprocess.run(
                ["nvidia-cuda-mps-control"], input="quit\n", text=True, env={**os.environ, **self.environment}
            )
            if stopped.returncode != 0:
                say(f"warning: echo quit | nvidia-cuda-mps-control failed (exit {stopped.returncode})", error=True)
            if self.pipes_in_tmp:
                shutil.rmtree(self.pipe_directory, ignore_errors=True)


def mps_for(plan: Plan) -> Mps | None:
    """The MPS daemon a local run's runs share the GPU through: with two or more workers on a GPU, unless --no-mps."""
    if not plan.cuda or plan.workers < 2 or plan.options.no_mps or shutil.which("nvidia-cuda-mps-control") is None:
        return None
    running = os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or MPS_DEFAULT_PIPE_DIRECTORY
    if os.path.exists(os.path.join(running, "control")):
        return Mps(running, os.environ.get("CUDA_MPS_LOG_DIRECTORY", ""), ours=False)
    if len(os.fsencode(f"{plan.out}/mps/pipe")) > MPS_PIPE_DIRECTORY_MAX:
        return Mps(f"/tmp/sprig-mps-{os.getpid()}", f"{plan.out}/mps/log", ours=True, pipes_in_tmp=True)
    return Mps(f"{plan.out}/mps/pipe", f"{plan.out}/mps/log", ours=True)


# ---------------------------------------------------------------------------------------------------------------
# A local run: every run of the matrix, --workers at a time, each in a process group of its own, so that Ctrl-C
# reaches only this process, which then stops every run (each writes its checkpoint on its way out).
# ---------------------------------------------------------------------------------------------------------------
STATUS_LINES = {
    # status: (the summary's counter it adds to, the run's line as it ends, and for a run that did not finish, a line
    # for the end of the summary (stderr), where it cannot scroll away)
    "ran": ("ran", "finished in {seconds} s", ""),
    "skipped": ("skipped", "already done, skipped", ""),
    "paused": (
        "paused",
        "paused at --stop-at-step {paused}, checkpointed; not done: the same command with a larger --stop-at-step, or none, "
        "goes on",
        "",
    ),
    "locked": ("locked", "running in another invocation, left to it", ""),
    "conflict": (
        "failed",
        "NOT RUN: finished earlier with other flags",
        "NOT RUN: {label}: {directory} finished earlier with other flags",
    ),
    "interrupted": (
        "failed",
        "interrupted after {seconds} s; checkpointed, a rerun resumes it",
        "INTERRUPTED: {label}: checkpointed in {directory}; run the same command again to resume",
    ),
    "failed": ("failed", "FAILED after {seconds} s", "FAILED: {label}; log: {directory}/log.txt"),
}


def describe_status(status: str, run: Run, seconds: int) -> tuple[str, str, str]:
    """STATUS_LINES' three for a run that ended with STATUS after SECONDS s."""
    counted_as, progress, problem = STATUS_LINES[status]
    paused = (read_text(os.path.join(run.directory, "paused")) or "") if status == "paused" else ""
    values = dict(seconds=seconds, label=run.label, directory=run.directory, paused=paused)
    return counted_as, progress.format(**values), problem.format(**values)


def run_locally(plan: Plan) -> int:
    """Every run, plan.workers at a time; then the summary and the plots. The exit status: 0 if every run is done
    (or paused, or left to another invocation) and every plot made, 130 after Ctrl-C, 1 otherwise."""
    say(
        f"{len(plan.runs)} runs, preset {plan.options.preset}, {plan.options.total_timesteps} steps each, {plan.workers} "
        f"workers x {plan.threads} threads, results in {plan.results_dir}"
    )
    for line in cost_lines(plan) + gpu_lines(plan):
        say(line)
    mps = plan.mps if plan.mps is not None and plan.mps.start() else None
    try:
        statuses = run_workers(plan, mps.environment if mps else {})
    finally:
        if mps is not None:
            mps.stop()
    if statuses is None:
        return 130
    say("")
    counts = dict.fromkeys(("ran", "skipped", "paused", "locked", "failed"), 0)
    for run, status in zip(plan.runs, statuses):
        counted_as, _, problem = describe_status(status or "failed", run, 0)
        counts[counted_as] += 1
        if problem:
            say(problem, error=True)
    say(
        f"summary: {counts['ran']} ran, {counts['skipped']} already done (skipped), {counts['paused']} paused at "
        f"--stop-at-step, {counts['locked']} running elsewhere (locked), {counts['failed']} failed"
    )
    if not plan.options.no_plot:
        for command, makes in plan.plot_commands():
            sys.stdout.flush()
            if subprocess.run(command).returncode == 0:
                say(makes)
            else:
                say(f"failed: {shlex.join(command)}", error=True)
                counts["failed"] += 1
    return 1 if counts["failed"] else 0


def run_workers(plan: Plan, environment: dict[str, str]) -> list[str | None] | None:
    """Run plan.runs on plan.workers threads, each run in the order of the matrix as a thread comes free; print a line
    as each ends. Returns each run's status, or None once SIGINT, SIGTERM or SIGHUP stopped them (a second one kills
    them: they resume from their last periodic checkpoint)."""
    statuses: list[str | None] = [None] * len(plan.runs)
    controls: dict[int, RunControl] = {}  # of the runs in progress
    queue = iter(range(len(plan.runs)))
    taking = threading.Lock()
    stopping = threading.Event()

    def interrupt(signum, frame):
        if stopping.is_set():
            say("interrupted again: killing the runs", error=True)
            for control in list(controls.values()):
                control.stop(signal.SIGKILL)
            return
        stopping.set()
        say("interrupted: stopping the runs", error=True)
        for control in list(controls.values()):
            control.stop()

    def worker():
        while not stopping.is_set():
            with taking:
                index = next(queue, None)
            if index is None:
                return
            run, control, start = plan.runs[index], RunControl(own_process_group=True), time.monotonic()
            controls[index] = control
            if stopping.is_set():  # stopped while this one was being taken: it does not start
                control.stop()
            try:
                statuses[index] = run_one(run.directory, run.command(plan.python), plan.threads, control, environment)
            except Exception:  # a bug, or a disk that failed: this run fails, the others go on
                say(traceback.format_exc().rstrip("\n"), error=True)
                statuses[index] = "failed"
            finally:
                del controls[index]
            _, progress, _ = describe_status(statuses[index], run, int(time.monotonic() - start))
            say(f"[{index + 1}/{len(plan.runs)}] {run.label}: {progress}")

    handlers = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(plan.workers, len(plan.runs)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # a timeout, so that the signal handler runs at once
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    return None if stopping.is_set() else statuses


def gpu_lines(plan: Plan) -> list[str]:
    """What a local run on a GPU does differently, for its first lines: every run gets --async-envs, and with two or
    more workers they share the GPU through MPS."""
    if not plan.cuda:
        return []
    given = parse_flags(plan.options.extra_flags)
    lines = []
    if "--async-envs" not in given and "--no-async-envs" not in given:
        lines.append("GPU (nvidia-smi -L): every run gets --async-envs, its envs stepping on the cores the GPU leaves idle")
    if plan.mps is not None:
        lines.append(plan.mps.describe())
    elif plan.workers >= 2 and not plan.options.no_mps and shutil.which("nvidia-cuda-mps-control") is None:
        lines.append("MPS: nvidia-cuda-mps-control is not on PATH: the runs time-slice the GPU")
    return lines


# ---------------------------------------------------------------------------------------------------------------
# --dry-run: the run matrix, each run's state and its exact command; nothing run, nothing created.
# ---------------------------------------------------------------------------------------------------------------
DRY_RUN_STATES = {
    "new": "[new]",
    "done": "[done: skip]",
    "conflict": "[done with other flags: conflict]",
    "resume": "[unfinished: resume from its checkpoint]",
    "clean": "[unfinished: clean and rerun]",
}


def print_dry_run(plan: Plan) -> None:
    variants = f"{len(plan.methods)} methods"
    if plan.swept_values:
        variants = f"sprig at {plan.swept_values} swept values ({plan.sweep_summary})"
    print(
        f"# {len(plan.runs)} runs = {variants} x {len(plan.env_ids)} envs x {len(plan.seeds)} seeds, preset "
        f"{plan.options.preset}, {plan.options.total_timesteps} steps each, {plan.workers} workers x {plan.threads} "
        f"threads ({plan.cores} cores)"
    )
    for line in cost_lines(plan) + gpu_lines(plan):
        print(f"# {line}")
    for method in plan.methods:
        script = os.path.join(REPO_DIR, method_named(method).script)
        if not os.path.isfile(script):
            print(f"# warning: {script} does not exist (yet)")
    print("# method env seed dir [state]")
    for run in plan.runs:
        command = run.command(plan.python)
        state = run_state(run.directory, Signature.of(command[1], command[2:]), plan.stop_at_step)
        if state == "paused":
            paused = read_text(os.path.join(run.directory, "paused"))
            description = f"[paused at --stop-at-step {paused}: skip, until --stop-at-step grows]"
        else:
            description = DRY_RUN_STATES[state]
        print(f"{run.label} {run.directory} {description}")
    print("# commands (each run from its dir, stdout+stderr to log.txt there):")
    variables = {
        "OMP_NUM_THREADS": plan.threads,
        "MKL_NUM_THREADS": plan.threads,
        **(plan.mps.environment if plan.mps else {}),
    }
    assignments = " ".join(f"{name}={shlex.quote(str(value))}" for name, value in variables.items())
    for run in plan.runs:
        print(f"cd {shlex.quote(run.directory)} && {assignments} {shlex.join(run.command(plan.python))}")
    if not plan.options.no_plot:
        for command, _ in plan.plot_commands():
            print(shlex.join(command))


# ---------------------------------------------------------------------------------------------------------------
# --slurm: a job array with one task per run, and a job that plots once every task has ended. Each task runs
# `python3 benchmark.py slurm-task DIR THREADS COMMAND...` for the run of its index (slurm_task); the plot job's
# `python3 benchmark.py slurm-report` names the runs not done.
# ---------------------------------------------------------------------------------------------------------------
def slurm_script(plan: Plan) -> str:
    """The sbatch job array."""
    options, last = plan.options, len(plan.runs) - 1
    lines = [
        "#!/bin/bash",
        f"# SPRIG benchmark: {len(plan.runs)} runs (preset {options.preset}), one array task each. Written by benchmark.sh "
        "--slurm, which",
        f"# submits it, then {plan.out}/sprig_benchmark_plot.sbatch with --dependency=afterany:ARRAYID (the array's job id).",
        "#SBATCH --job-name=sprig-benchmark",
        f"#SBATCH --array=0-{last}",
        f"#SBATCH --time={options.time}",
        f"#SBATCH --cpus-per-task={options.cpus_per_task}",
    ]
    if int(options.gpus) > 0:
        lines.append(f"#SBATCH --gpus={options.gpus}")
    if options.partition:
        lines.append(f"#SBATCH --partition={options.partition}")
    lines += [
        f"#SBATCH --output={plan.out}/slurm-%A_%a.out",
        "#SBATCH --open-mode=append",  # a requeued task goes on writing its output file
        "#SBATCH --requeue",
    ]
    if plan.time_margin > 0:  # the warning: the task checkpoints its run and requeues itself (slurm_task)
        lines.append(f"#SBATCH --signal=B:USR1@{plan.time_margin}")
    lines += [
        "set -euo pipefail",
        "# Load modules / activate the Python environment here if the job needs it.",
        "",
        "# The run of this task: its directory and its command. benchmark.py runs it there (or skips it if it is done),",
        "# and on Slurm's warning (SIGUSR1) stops it with its checkpoint and requeues this task, which resumes it.",
        "case ${SLURM_ARRAY_TASK_ID:?run this script with sbatch} in",
    ]
    for index, run in enumerate(plan.runs):
        lines += [
            f"{index}) # {run.label}",
            f"    dir={shlex.quote(run.directory)}",
            f"    command=({shlex.join(run.command(plan.python))}) ;;",
        ]
    lines += [
        '*) echo "no run for array task $SLURM_ARRAY_TASK_ID" >&2 && exit 1 ;;',
        "esac",
        f'exec python3 {shlex.quote(os.path.join(REPO_DIR, "benchmark.py"))} slurm-task "$dir" '
        f'"${{SLURM_CPUS_PER_TASK:-{options.cpus_per_task}}}" "${{command[@]}}"',
    ]
    return "\n".join(lines) + "\n"


def slurm_plot_script(plan: Plan) -> str:
    """The job that plots once every array task has ended, and names the runs not done."""
    lines = [
        "#!/bin/bash",
        f"# SPRIG benchmark: plot what the job array of {plan.out}/sprig_benchmark.sbatch finished, once all its tasks have",
        "# ended; name the runs not done. Written by benchmark.sh --slurm, which submits it with",
        "# --dependency=afterany:ARRAYID.",
        "#SBATCH --job-name=sprig-benchmark-plot",
        f"#SBATCH --time={plan.plot_time_limit}",
        "#SBATCH --cpus-per-task=1",
    ]
    if plan.options.partition:
        lines.append(f"#SBATCH --partition={plan.options.partition}")
    lines += [
        f"#SBATCH --output={plan.out}/slurm-plot-%j.out",
        "set -uo pipefail",
        "# Load modules / activate the Python environment here if the job needs it.",
        "",
        "status=0",
        "# The runs, one a line (its label, directory and command): benchmark.py names those not done, and counts them.",
        f"python3 {shlex.quote(os.path.join(REPO_DIR, 'benchmark.py'))} slurm-report <<'END_OF_RUNS' || status=1",
    ]
    for run in plan.runs:
        lines.append(json.dumps({"run": run.label, "dir": run.directory, "command": run.command(plan.python)}))
    lines.append("END_OF_RUNS")
    for command, makes in plan.plot_commands():
        lines.append(f"{shlex.join(command)} && echo {shlex.quote(makes)} || status=1")
    lines.append("exit $status")
    return "\n".join(lines) + "\n"


def write_slurm_scripts(plan: Plan) -> int:
    """Write the sbatch scripts, and submit them if sbatch is on PATH."""
    path, plot_path, out = f"{plan.out}/sprig_benchmark.sbatch", f"{plan.out}/sprig_benchmark_plot.sbatch", plan.out
    plot = not plan.options.no_plot
    os.makedirs(out, exist_ok=True)
    with open(path, "w") as file:
        file.write(slurm_script(plan))
    say(f"wrote {path} ({len(plan.runs)} array tasks)")
    if plot:
        with open(plot_path, "w") as file:
            file.write(slurm_plot_script(plan))
        say(f"wrote {plot_path} (plots once every task has ended)")
    if shutil.which("sbatch") is None:
        say("sbatch is not on PATH; on the cluster, run this same command there, or submit with:")
        say(
            f"  id=$(sbatch --parsable {path}) && sbatch --dependency=afterany:${{id%%;*}} {plot_path}"
            if plot
            else f"  sbatch {path}"
        )
        return 0
    submitted = subprocess.run(["sbatch", "--parsable", path], stdout=subprocess.PIPE, text=True)
    if submitted.returncode != 0:
        say(f"error: sbatch {path} failed", error=True)
        return 1
    array_id = submitted.stdout.rstrip("\n").split(";")[0]  # --parsable prints "id" or "id;cluster"
    if not is_whole(array_id):
        say(f"error: sbatch --parsable printed '{array_id}', not a job id", error=True)
        return 1
    say(
        f"submitted the job array: job {array_id}, {len(plan.runs)} tasks; each task's output: {out}/slurm-{array_id}_TASK.out"
    )
    jobs = array_id
    if plot:
        submitted = subprocess.run(
            ["sbatch", "--parsable", f"--dependency=afterany:{array_id}", plot_path], stdout=subprocess.PIPE, text=True
        )
        if submitted.returncode != 0:
            say(f"error: sbatch {plot_path} failed; the array runs, but nothing will plot it", error=True)
            return 1
        plot_id = submitted.stdout.rstrip("\n").split(";")[0]
        say(
            f"submitted the plot job: job {plot_id}, once all tasks have ended ({plan.results_dir}/results.md; output: "
            f"{out}/slurm-plot-{plot_id}.out)"
        )
        jobs += f",{plot_id}"
    say(f"follow: squeue -j {jobs}; tail {out}/slurm-{array_id}_*.out; each run's log.txt")
    return 0


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def checkpoint_stamp(directory: str) -> str:
    """The run's newest checkpoint's path, time and size: it changes when the run checkpoints; '' without one."""
    checkpoint = latest_checkpoint(directory)
    try:
        status = os.stat(checkpoint) if checkpoint else None
    except OSError:
        status = None
    return f"{checkpoint} {status.st_mtime_ns} {status.st_size}" if status else ""


def slurm_task(directory: str, threads: int, command: list[str]) -> int:
    """One array task: run_one under two signals. SIGUSR1 (Slurm's warning, --time-margin seconds before the time
    limit, to the batch shell only, which this process replaced) and SIGTERM (scancel, a limit reached unwarned,
    preemption: Slurm sends it to every process of the job) stop the run as Ctrl-C does: SIGTERM to it, it finishes
    its iteration, writes its checkpoint and exits 3, and its lock is released. After the warning, a run that wrote a
    checkpoint since this start requeues the task, which starts again later, resuming from that checkpoint; a run that
    finished, failed, or wrote no checkpoint since this start (no progress) is not requeued. Slurm may requeue a task
    itself (PreemptMode=REQUEUE). The exit status: 0 done, skipped, paused or requeued; 3 stopped; 1 otherwise."""
    task, control, warned = slurm_job(), RunControl(own_process_group=False), []

    def stop(signum, frame):
        name = signal.Signals(signum).name
        # os.write, not print: the handler may run inside a print of this process's main thread.
        os.write(1, f"{now()} {name}: stopping the run (its iteration finishes, then it writes its checkpoint)\n".encode())
        if signum == signal.SIGUSR1:
            warned.append(True)
        control.stop()

    signal.signal(signal.SIGUSR1, stop)
    signal.signal(signal.SIGTERM, stop)
    restart = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    say(f"{now()} task {task}, start {restart + 1}, on {hostname()}: {directory}")
    before = checkpoint_stamp(directory)
    status = run_one(directory, command, threads, control)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the run is over: a requeue's SIGTERM must not cut what follows
    after = checkpoint_stamp(directory)
    say(f"{now()} {directory}: {status}")
    if status in ("ran", "skipped", "paused"):
        return 0
    if status == "interrupted":
        if warned and after and after != before:
            say(f"requeueing {task}: it starts again, resuming from its checkpoint")
            if subprocess.run(["scontrol", "requeue", task]).returncode == 0:
                return 0
            say(f"error: scontrol requeue {task} failed; the same benchmark.sh --slurm command resumes the run", error=True)
        elif warned:
            say(
                f"not requeued: the run wrote no checkpoint since this start (no progress); see {directory}/log.txt",
                error=True,
            )
        else:
            say("stopped with its checkpoint; not requeued by this task (the same benchmark.sh --slurm command resumes it)")
        return 3
    if status == "failed":
        say(f"not requeued: the run failed; see {directory}/log.txt", error=True)
        return 1
    say(f"not requeued: the run is {status}", error=True)  # locked or conflict: run_one said why
    return 1


SLURM_REPORT_STATES = {
    "resume": "unfinished, checkpointed: the same benchmark.sh --slurm command resumes it",
    "conflict": "done with other flags",
    "clean": "unfinished, no checkpoint: it starts again",
    "new": "unfinished, no checkpoint: it starts again",
}


def slurm_report(lines) -> int:
    """The plot job's report: each run not done (one JSON object a line: run, dir, command), then how many are done."""
    runs = [json.loads(line) for line in lines if line.strip()]
    not_done = 0
    for run in runs:
        command = run["command"]
        state = run_state(run["dir"], Signature.of(command[1], command[2:]), stop_at_step(command))
        if state == "done":
            continue
        if state == "paused":
            description = f"paused at --stop-at-step {read_text(os.path.join(run['dir'], 'paused'))}"
        else:
            description = SLURM_REPORT_STATES[state]
        say(f"not done: {run['run']} ({description}); log: {run['dir']}/log.txt")
        not_done += 1
    say(f"{len(runs) - not_done} of {len(runs)} runs done, {not_done} not done")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# The cost of the run matrix, before it starts: runs, env steps, and the wall time at the speed --sps measured. --sps
# writes OUT/sps/DATE/sps.md (one row per method: SPS of one run alone on the machine, all cores to it, the preset's
# batch) and `measured_with` beside it (the preset, the flags after --, the machine's load average when it started);
# the newest one of this --preset is used, from OUT/sps or from --sps-from DIR (another machine's: the GPU machine
# the runs are for, say).
# ---------------------------------------------------------------------------------------------------------------
def speed_table(plan: Plan) -> tuple[str, str | None]:
    """(where speeds are looked for, the newest sps.md there measured with this preset, or None): OUT/sps, or with
    --sps-from DIR, DIR as --sps left it elsewhere: one measurement (sps.md), an OUT/sps, or an OUT."""
    if plan.options.sps_from:
        where = absolute(plan.options.sps_from).rstrip("/") or "/"
        patterns = ("sps.md", "*/sps.md", "sps/*/sps.md")
    else:
        where, patterns = f"{plan.out}/sps", ("*/sps.md",)
    tables = [table for pattern in patterns for table in glob.glob(os.path.join(glob.escape(where), pattern))]
    for table in sorted(tables, key=lambda table: os.path.basename(os.path.dirname(table)), reverse=True):
        measured_with = read_text(os.path.join(os.path.dirname(table), "measured_with")) or ""
        if measured_with.split("\n")[0] == f"preset {plan.options.preset}":  # DATE is YYYYmmdd-HHMMSS: newest first
            return where, table
    return where, None


def table_speed(table: str, label: str) -> str | None:
    """The SPS of LABEL's row in a speed table, the column found by its header, so a reordered table is still read."""
    column = None
    with open(table) as file:
        for line in file:
            cells = re.split(r" *[|] *", line.rstrip("\n"))
            if column is None:
                column = cells.index("SPS") if "SPS" in cells else None
            elif len(cells) > 1 and cells[1] == label:
                return cells[column] if column < len(cells) else ""
    return None


def positive_number(text: str | None) -> float | None:
    """TEXT's leading number if it is above 0 (as awk reads '1e+02' or '400 SPS'), else None."""
    match = re.match(r"\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?", text or "")
    return float(match[0]) if match and float(match[0]) > 0 else None


def thousands(number: int) -> str:
    return f"{number:,}"


def hms(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    text = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return text + (f" ({seconds / 86400:.1f} days)" if seconds >= 172800 else "")


def cost_lines(plan: Plan) -> list[str]:
    """The matrix's runs and env steps, and its estimated wall time for plan.workers workers."""
    runs, total, steps, paused = len(plan.runs), plan.total_timesteps, plan.total_timesteps, ""
    if plan.stop_at_step is not None and plan.stop_at_step < total:  # what this command trains: each run up to its pause
        steps, paused = plan.stop_at_step, f" (up to --stop-at-step, of {thousands(total)} each)"
    lines = [f"cost: {runs} runs x {thousands(steps)} steps = {thousands(runs * steps)} env steps{paused}"]
    (where, table), preset = speed_table(plan), plan.options.preset
    if table is None:
        return lines + [
            f"wall time: unknown, no speed measured with --preset {preset} in {where}; measure it (a few minutes) with "
            f"./benchmark.sh --sps --preset {preset} --out {plan.out}, adding after -- the flags the runs get"
        ]
    seconds, speeds, unmeasured = 0.0, [], []
    for method in plan.methods:
        count = sum(run.method == method for run in plan.runs)
        label = method_named(method).label
        sps = table_speed(table, label)
        if positive_number(sps) is None:
            unmeasured.append(f"{method} ({count} runs)")
            continue
        speeds.append(f"{label} {sps} SPS")
        seconds += count * steps / positive_number(sps)
    if not speeds:
        return lines + [
            f"wall time: unknown, {table} holds no speed of {', '.join(unmeasured)}; measure it with --sps and --methods"
        ]
    # One run at a time, each at its measured speed; WORKERS runs side by side take between that over WORKERS (each
    # keeps its speed: a run that leaves cores idle) and all of it (they share the machine's speed: runs that each
    # keep every core busy, as on a CPU with a few cores). Start-up, evaluation and checkpoints are not counted.
    measured_with = (read_text(os.path.join(os.path.dirname(table), "measured_with")) or "").split("\n")
    flags = measured_with[1] if len(measured_with) > 1 else ""
    measured = f"{flags}; {measured_with[2]}" if len(measured_with) > 2 and measured_with[2] else flags  # older: no load
    lines.append(
        f"wall time: about {hms(seconds)} one run at a time, at the speeds measured in {table} ({', '.join(speeds)}; "
        f"flags after -- then: {'none' if measured.startswith(';') or not measured else ''}{measured})"
    )
    if plan.workers > 1:
        lines.append(
            f"with {plan.workers} workers: between {hms(seconds / plan.workers)} (if each run keeps that speed beside the "
            f"others) and {hms(seconds)} (if they share it, as runs that keep every core busy do); start-up and evaluation "
            "not counted"
        )
    if unmeasured:
        lines.append(f"wall time leaves out {', '.join(unmeasured)}: no speed measured in {table}")
    return lines


# ---------------------------------------------------------------------------------------------------------------
# --sps: each method alone on the machine, one after the other, for --sps-iterations iterations; then the speed table.
# ---------------------------------------------------------------------------------------------------------------
def measure_sps(plan: Plan) -> int:
    options = plan.options
    directory = f"{plan.out}/sps/{time.strftime('%Y%m%d-%H%M%S')}"
    # Other work on the machine slows the runs measured here (threads waiting for busy cores), and so lengthens every
    # wall time estimated from them: the load is recorded with the speeds, and a busy machine is said to be one.
    load = (read_text("/proc/loadavg") or "").split(" ")[0]
    if load and float(load) >= plan.cores / 2:
        say(
            f"warning: the machine is busy (load average {load} on {plan.cores} cores): the speeds measured now, and the "
            "wall times estimated from them, come out slower than on an idle machine",
            error=True,
        )
    flags = ["--env-id", plan.env_ids[0], "--seed", plan.seeds[0], *PRESETS[options.preset], *options.extra_flags]
    given = parse_flags(flags)  # the batch size the runs will use, so each does whole iterations
    batch = int(given.get("--num-envs", ("8",))[-1]) * int(given.get("--num-steps", ("128",))[-1])
    flags += ["--total-timesteps", str(batch * int(options.sps_iterations))]
    for name in plan.methods:
        method = method_named(name)
        os.makedirs(f"{directory}/{name}", exist_ok=True)
        say(
            f"sps: {name}, {options.sps_iterations} iterations (the first is warm-up), {plan.cores} threads, log in "
            f"{directory}/{name}/log.txt"
        )
        threads = {"OMP_NUM_THREADS": str(plan.cores), "MKL_NUM_THREADS": str(plan.cores)}
        with open(f"{directory}/{name}/log.txt", "w") as log:
            measured = subprocess.run(
                [plan.python, os.path.join(REPO_DIR, method.script), *method.flags, *flags],
                cwd=f"{directory}/{name}",
                env={**os.environ, **threads},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if measured.returncode != 0:
            die(f"{name} failed; see {directory}/{name}/log.txt")
    sys.stdout.flush()
    plotted = subprocess.run([plan.python, os.path.join(REPO_DIR, "plot_results.py"), "sps", directory])
    if plotted.returncode != 0:
        return plotted.returncode
    # What the cost estimate of a later run reads back: the preset, the flags after --, the load before measuring.
    write_text(
        f"{directory}/measured_with",
        f"preset {options.preset}\n{' '.join(options.extra_flags)}\n"
        f"load average {load or 'unknown'} on {plan.cores} cores when measured",
    )
    return 0


# ---------------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------------
def usage() -> str:
    return USAGE.format(methods=methods_help(), paper=" ".join(PRESETS["paper"]))


def methods_help() -> str:
    """--help's list: each method, its script and flags, what it is; wrapped under --methods' column."""
    lines = []
    for method in METHODS:
        flags = [word for name, values in flag_groups(method.flags) if name != "--exp-name" for word in (name, *values)]
        text = f"{method.name:<14} {method.script}{' ' if flags else ''}{' '.join(flags)}: {method.what}"
        while len(text) > 88:
            cut = text.rfind(" ", 16, 88)  # the last space that leaves the line at most 88 wide
            if cut < 16:
                break  # one word longer than the line: printed whole
            lines.append(" " * 28 + text[:cut])
            text = " " * 15 + text[cut + 1 :]
        lines.append(" " * 28 + text)
    return "\n".join(lines) + "\n"


USAGE = """usage: ./benchmark.sh [options] [-- flags passed to every run]

Runs every (method x env x seed) combination of ppo_atari.py / sprig_ppo_atari.py, each in its own directory
OUT/PRESET/ENV/METHOD/seedSEED/ (runs/, log.txt, command.txt, and a 'done' marker once it exited 0), then
calls plot_results.py on OUT/PRESET (figure2.png, results.md). Rerunning skips finished runs and resumes
unfinished ones from their last checkpoint (from scratch if they have none, or were started with other flags);
concurrent invocations never run the same combination twice. How a run ended is its script's exit status: 0
finished (done), 3 stopped by a signal with its checkpoint (interrupted), 4 paused at --stop-at-step, other failed.

options:
  --methods "ppo sprig"     methods to run (default: ppo sprig), each in OUT/PRESET/ENV/METHOD/:
{methods}  --env-ids "IDS"           env ids (default: BeamRiderNoFrameskip-v4)
  --games NAME              a game set instead of --env-ids, each game as its NoFrameskip-v4 id:
                            atari5: BattleZone DoubleDunk NameThisGame Phoenix Qbert, the five games whose scores
                                    best predict the median over all 57 (Atari-5; Aitchison, Sweetser & Hutter 2022)
                            atari3: BattleZone NameThisGame Phoenix, that paper's validation set, for tuning
  --seeds "1 2 3 4 5"       seeds (default: 1 2 3 4 5)
  --total-timesteps N       env steps per run (default: 10000000)
  --stop-at-step N          pause every run once it has N steps, on the schedule of --total-timesteps (its
                            learning rate anneals over all of them): it writes its checkpoint and is reported
                            paused, not done. The same command with a larger N (or without it) goes on, so a
                            campaign grows: the first 1M steps of 10M-step runs, then 2M, ...
  --workers N               runs in parallel (default: 1). On CPU each run uses about 2 cores; the cores are
                            split between the runs: OMP_NUM_THREADS = MKL_NUM_THREADS = max(1, cores / workers)
  --no-mps                  on a machine with an NVIDIA GPU (nvidia-smi -L lists one), the runs of 2 or more
                            workers share it through NVIDIA MPS: a control daemon already running (a 'control'
                            pipe in $CUDA_MPS_PIPE_DIRECTORY, default /tmp/nvidia-mps), or one started for them
                            (pipes and logs in OUT/mps/) and stopped after the last; --no-mps: without. There,
                            every run also gets --async-envs (its envs step on the cores the GPU leaves idle)
  --checkpoint-every N      each run writes its checkpoint.pt every N iterations, for resuming it if it is
                            killed (default: 25, about 26k steps; 0: never, killed runs restart from scratch).
                            A run stopped with Ctrl-C or kill writes one on its way out in any case
  --out DIR                 results directory (default: benchmark_results; benchmark_results_quick with --quick)
  --preset NAME             cleanrl: the scripts' defaults (CleanRL's ppo_atari, default)
                            paper:   the paper's Table 1 for both methods (docs/design.md, "The paper's
                                     setup (Table 1, Figure 2)"):
                                     {paper}
  --quick                   CPU-sized check: seeds 1 2, 50000 steps, 2 workers (each unless given explicitly);
                            about an hour on 2 cores
  --dry-run                 print the run matrix (method env seed dir [state]) and the exact commands; run
                            nothing, create nothing (with --slurm: print the sbatch scripts instead of writing them).
                            It and a real run start with the cost: runs, env steps, and the wall time estimated
                            from the speed --sps measured (with the same --out and --preset) for --workers
  --sps-from DIR            that speed from DIR instead of OUT/sps: what --sps wrote on another machine (its --out,
                            its sps/ or one sps/DATE/), e.g. on the GPU machine the runs are for
  --no-plot                 do not call plot_results.py at the end
  --sweep "FLAG=V1 V2 ..."  ablation of one SPRIG coefficient: run sprig once per VALUE of FLAG, a flag of
                            sprig_ppo_atari.py without its dashes (e.g. "alpha-coop=0.0 0.3 0.7 1.0" or
                            "attn-cost-coef=0 1e-4 1e-3"), for every env id and seed, as --FLAG VALUE
                            --exp-name sprig_FLAG=VALUE in OUT/PRESET/ENV/sprig_FLAG=VALUE/seedSEED/. A sweep runs
                            only sprig (ppo is left out). Repeat --sweep to sweep several flags, each on its own
                            with the others at their defaults (no cross product). At the end, also plot_results.py
                            tradeoff: tradeoff_FLAG.png and tradeoff_FLAG.md in OUT/PRESET
  --sps                     measure speed instead: each method alone, one after the other, for --sps-iterations
                            iterations of the first env id and seed, with the preset and the flags after --; prints
                            SPS and seconds per iteration split into env stepping, action inference and update (the
                            perf/* scalars), into OUT/sps/DATE/sps.md
    --sps-iterations N      iterations of each --sps run (default 4, at least 2: the first is warm-up)
  --slurm                   write OUT/sprig_benchmark.sbatch, a job array with one task per combination, and
                            OUT/sprig_benchmark_plot.sbatch, which plots (and names the runs not done) once every
                            task has ended (no GPU; not with --no-plot); submit both with sbatch if it is on PATH.
                            Each task's output: OUT/slurm-ARRAYID_TASK.out, appended to across its starts. A task
                            warned of its time limit stops its run as Ctrl-C does (a checkpoint), requeues itself
                            and resumes there, so a run may span several time limits; one that finished, failed or
                            made no progress is not requeued. scancel, a limit reached unwarned or preemption: the
                            run checkpoints and stops; the same command again resumes it. Slurm options:
    --partition P           partition (default: the cluster's default)
    --time T                time limit per task, as sbatch takes it (default: 24:00:00)
    --time-margin SECONDS   warn a task this long before its time limit (SIGUSR1), so that it checkpoints and
                            requeues itself (default: 300; Slurm may warn up to 60 s early; 0: no warning, no requeue)
    --gpus N                GPUs per task (default: 1; with 0 the runs get --no-cuda)
    --cpus-per-task N       CPUs per task (default: 4; also the runs' thread count)
  -h, --help                show this help

environment: PYTHON   the python that runs the scripts and plot_results.py (default: python)

examples:
  ./benchmark.sh --quick
  ./benchmark.sh --preset paper --workers 2 -- --async-envs
  ./benchmark.sh --slurm --partition gpu --seeds "1 2 3 4 5"
  ./benchmark.sh --sps
  ./benchmark.sh --games atari5 --preset paper --seeds "1 2 3" --dry-run
  ./benchmark.sh --sweep "alpha-coop=0.0 0.3 0.7 1.0" --sweep "attn-cost-coef=0 1e-4 1e-3"
"""


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `./benchmark.sh --dry-run | head` ends quietly, as a shell tool does
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # in order with the output of the processes it starts
    if argv[:1] == ["slurm-task"]:  # what a task of the sbatch job array runs: DIR THREADS COMMAND...
        return slurm_task(argv[1], int(argv[2]), argv[3:])
    if argv[:1] == ["slurm-report"]:  # what the plot job runs, the runs on stdin
        return slurm_report(sys.stdin)
    options = parse_options(argv)
    mistake = methods_table_mistake()
    if mistake:
        die(mistake)
    plan = make_plan(options)
    if options.sps:
        if not is_count(options.sps_iterations) or int(options.sps_iterations) < 2:
            die(f"--sps-iterations must be at least 2, got '{options.sps_iterations}'")
        check_scripts_exist(plan)
        return measure_sps(plan)
    if options.dry_run and options.slurm:
        print(slurm_script(plan), end="")
        if not options.no_plot:
            print()
            print(f"# ---- {plan.out}/sprig_benchmark_plot.sbatch, submitted with --dependency=afterany:ARRAYID ----")
            print(slurm_plot_script(plan), end="")
        return 0
    if options.dry_run:
        print_dry_run(plan)
        return 0
    check_scripts_exist(plan)
    if options.slurm:
        return write_slurm_scripts(plan)
    try:
        return run_locally(plan)
    except KeyboardInterrupt:  # before the runs started, or after they ended
        say("interrupted", error=True)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
