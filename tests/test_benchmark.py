"""benchmark.sh (benchmark.py behind it): the run matrix, resuming, locking, failures, Slurm, errors.

benchmark.sh runs with PYTHON pointing to a fake python (a small bash script) so no training happens: the fake
records each call, writes a run directory like the real scripts do, and fails, hangs or stops as told to, with the
real scripts' exit statuses (0 finished, 3 interrupted with a checkpoint, 4 paused). benchmark.sh and benchmark.py
are copied into a sandbox next to placeholder training scripts, so the tests do not depend on which training scripts
exist yet in the repo. The sbatch script's tasks run here as plain processes, with a fake scontrol;
tests/test_slurm.py submits them to a real Slurm. On a GPU machine, the tests hide its GPU unless they stand in one.
"""

import contextlib
import csv
import glob
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
from benchmark import MACHINERY_FLAGS, build_parser, signature
from helpers import is_locked, pid_alive

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = "BeamRiderNoFrameskip-v4"
PAPER_FLAGS = (
    "--num-envs 8 --num-steps 256 --num-minibatches 32 --learning-rate 1e-4 --clip-coef 0.2 --max-episode-steps 10000"
)

# Called as: fake_python SCRIPT FLAGS... from a run directory. Appends "cwd|OMP_NUM_THREADS|args" to $FAKE_CALLS (and a
# training run's MPS directories to $FAKE_MPS_CALLS).
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "$PWD|${OMP_NUM_THREADS:-}|$*" >>"$FAKE_CALLS"
script=$(basename "$1")
if [[ $script == plot_results.py ]]; then
    echo "fake plot of $2"
    exit "${FAKE_PLOT_STATUS:-0}"
fi
[[ -z ${FAKE_MPS_CALLS:-} ]] || echo "run|$PWD|${CUDA_MPS_PIPE_DIRECTORY:-}|${CUDA_MPS_LOG_DIRECTORY:-}" >>"$FAKE_MPS_CALLS"
shift
while (($# > 0)); do
    case $1 in
    --seed) seed=$2 ;;
    --env-id) env_id=$2 ;;
    --resume) resume=$2 ;;
    esac
    shift
done
[[ -z ${FAKE_SLEEP:-} ]] || sleep "$FAKE_SLEEP"
if [[ -n ${FAKE_HANG:-} ]]; then
    echo $$ >>"$FAKE_HANG"
    sleep 60
fi
if [[ "${script%.py}:$seed" == "${FAKE_FAIL:-}" ]]; then
    echo "Traceback: fake failure" >&2
    exit 1
fi
run_dir="runs/${env_id}__${script%.py}__${seed}__$(date +%s)"
if [[ -n ${resume:-} ]]; then
    run_dir=$(dirname "$resume")
fi
mkdir -p "$run_dir"
echo fake >>"$run_dir/events.out.tfevents.0.fake"
echo "iter 1/1 | step 64 | SPS 100"
if [[ -n ${FAKE_STOPPABLE:-} ]]; then  # trains until SIGTERM, then checkpoints (unless "noprogress") and exits 3
    trap '[[ $FAKE_STOPPABLE == noprogress ]] || echo checkpoint >>"$run_dir/checkpoint.pt"; kill $!; exit 3' TERM
    echo $$ >>"$FAKE_STOPPABLE_PIDS"
    sleep 60 &
    wait
    exit 0
fi
if [[ -n ${FAKE_INTERRUPT:-} ]]; then  # as a real run does on SIGTERM
    echo checkpoint >"$run_dir/checkpoint.pt"
    echo "interrupted at step 64; resume with: python $script --resume $run_dir/checkpoint.pt"
    exit 3
fi
if [[ -n ${FAKE_PAUSE:-} ]]; then  # as a real run does at its --stop-at-step
    echo checkpoint >"$run_dir/checkpoint.pt"
    exit 4
fi
if [[ -n ${FAKE_SAYS:-} ]]; then  # a finished run whose output happens to hold what a stopped run prints
    echo "$FAKE_SAYS"
fi
"""


@pytest.fixture
def sandbox(tmp_path):
    """tmp_path/repo holding benchmark.sh, benchmark.py, methods.py and placeholder scripts, tmp_path/bin/python the fake
    python."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for tool in ("benchmark.sh", "benchmark.py", "methods.py"):
        shutil.copy(os.path.join(REPO, tool), repo / tool)
    for script in ("ppo_atari.py", "sprig_ppo_atari.py", "plot_results.py"):
        (repo / script).write_text("raise SystemExit('placeholder: the tests run a fake python')\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    (tmp_path / "work").mkdir()
    return tmp_path


def benchmark_environment(sandbox, **env):
    """The variables benchmark.sh runs under in these tests: the fake python, on a machine without a GPU unless ENV says
    otherwise (gpu_machine)."""
    environment = dict(os.environ, PYTHON=str(sandbox / "bin" / "python"), FAKE_CALLS=str(sandbox / "calls.txt"))
    environment["CUDA_VISIBLE_DEVICES"] = ""  # a GPU this machine may have is hidden from benchmark.py and the runs
    return {**environment, **env}


def run_benchmark(sandbox, *args, timeout=60, **env):
    """Run the sandbox's benchmark.sh from sandbox/work under benchmark_environment; returns the CompletedProcess."""
    return subprocess.run(
        ["bash", str(sandbox / "repo" / "benchmark.sh"), *args],
        cwd=sandbox / "work",
        env=benchmark_environment(sandbox, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fake_calls(sandbox):
    """[(cwd, OMP_NUM_THREADS, args)] of every fake python call so far."""
    path = sandbox / "calls.txt"
    return [tuple(line.split("|", 2)) for line in path.read_text().splitlines()] if path.exists() else []


def training_calls(sandbox):
    return [call for call in fake_calls(sandbox) if "plot_results.py" not in call[2]]


def run_dir(sandbox, method, seed, out="out", preset="cleanrl", env_id=ENV):
    return sandbox / "work" / out / preset / env_id / method / f"seed{seed}"


def tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_dry_run_prints_one_line_per_combination_and_the_commands_and_creates_nothing(sandbox):
    result = run_benchmark(
        sandbox, "--dry-run", "--preset", "paper", "--env-ids", f"{ENV} PongNoFrameskip-v4", "--seeds", "1 2 3", "--out", "out"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    matrix = [line.split() for line in lines if line.split()[0] in ("ppo", "sprig")]
    expected = set(itertools.product(["ppo", "sprig"], [ENV, "PongNoFrameskip-v4"], ["1", "2", "3"]))
    assert len(matrix) == 12 and {tuple(fields[:3]) for fields in matrix} == expected
    for method, env_id, seed, directory, *_ in matrix:
        assert directory == str(sandbox / "work" / "out" / "paper" / env_id / method / f"seed{seed}")
    commands = [line for line in lines if line.startswith("cd ")]
    assert len(commands) == 12
    for method, env_id, seed in expected:
        script = "ppo_atari.py" if method == "ppo" else "sprig_ppo_atari.py"
        directory = sandbox / "work" / "out" / "paper" / env_id / method / f"seed{seed}"
        [command] = [c for c in commands if c.startswith(f"cd {directory} ")]
        assert f"/repo/{script} --env-id {env_id} --seed {seed} --total-timesteps 10000000 {PAPER_FLAGS}" in command
    assert tree(sandbox / "work") == [] and fake_calls(sandbox) == []


ATARI5 = [f"{game}NoFrameskip-v4" for game in ("BattleZone", "DoubleDunk", "NameThisGame", "Phoenix", "Qbert")]


@pytest.mark.parametrize("preset", ["cleanrl", "paper"])
def test_games_atari5_runs_every_method_and_seed_on_the_five_games_and_says_what_it_costs(sandbox, preset):
    result = run_benchmark(sandbox, "--games", "atari5", "--preset", preset, "--seeds", "1 2 3", "--out", "out", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    matrix = [line.split() for line in lines if line.split()[0] in ("ppo", "sprig")]
    assert [tuple(fields[:3]) for fields in matrix] == [
        (method, env_id, seed) for seed in "123" for env_id in ATARI5 for method in ("ppo", "sprig")
    ]
    commands = [line for line in lines if line.startswith("cd ")]
    assert len(commands) == 30 and all((PAPER_FLAGS in command) == (preset == "paper") for command in commands)
    assert lines[0].startswith(f"# 30 runs = 2 methods x 5 envs x 3 seeds, preset {preset}, 10000000 steps each")
    assert lines[1] == "# cost: 30 runs x 10,000,000 steps = 300,000,000 env steps"
    out = sandbox / "work" / "out"
    assert lines[2] == (
        f"# wall time: unknown, no speed measured with --preset {preset} in {out}/sps; measure it (a few minutes) with "
        f"./benchmark.sh --sps --preset {preset} --out {out}, adding after -- the flags the runs get"
    )
    assert tree(sandbox / "work") == []
    atari3 = run_benchmark(sandbox, "--games", "atari3", "--seeds", "1", "--dry-run")
    assert [line.split()[1] for line in atari3.stdout.splitlines() if line.startswith("ppo ")] == [
        "BattleZoneNoFrameskip-v4",
        "NameThisGameNoFrameskip-v4",
        "PhoenixNoFrameskip-v4",
    ]


def write_speed_table(sandbox, date, preset, speeds, flags=(), out="out"):
    """OUT/sps/DATE/sps.csv and measured_with.json as --sps writes them, with the given {method: SPS}; returns DATE's
    directory."""
    directory = sandbox / "work" / out / "sps" / date
    directory.mkdir(parents=True)
    rows = [f"{method},{ENV},{sps},1,1,1,3" for method, sps in speeds.items()]
    header = "method,env,SPS,env s/iter,inference s/iter,update s/iter,iterations"
    (directory / "sps.csv").write_text("\n".join([header, *rows]) + "\n")
    measured_with = {"preset": preset, "flags": list(flags), "load": 0.5, "cores": 2}
    (directory / "measured_with.json").write_text(json.dumps(measured_with))
    return directory


def test_the_wall_time_is_estimated_from_the_newest_speed_measured_with_the_preset_for_the_workers(sandbox):
    write_speed_table(sandbox, "20260101-120000", "cleanrl", {"PPO": "100", "SPRIG": "10"})
    table = write_speed_table(sandbox, "20260102-120000", "cleanrl", {"PPO": "400", "SPRIG": "1e+02"}, ["--async-envs"])
    write_speed_table(sandbox, "20260103-120000", "paper", {"PPO": "1", "SPRIG": "1"})
    args = ["--games", "atari5", "--seeds", "1 2", "--total-timesteps", "2048", "--out", "out", "--workers", "2"]
    result = run_benchmark(sandbox, *args, "--dry-run")
    assert result.returncode == 0, result.stderr
    # 10 PPO runs of 2048 steps at 400 SPS (51.2 s) and 10 SPRIG runs at 100 SPS (204.8 s): 256 s, 128 s on 2 workers.
    assert result.stdout.splitlines()[1:4] == [
        "# cost: 20 runs x 2,048 steps = 40,960 env steps",
        f"# wall time: about 0:04:16 one run at a time, at the speeds measured in {table} (PPO 400 SPS, SPRIG 100 SPS; "
        "flags after -- then: --async-envs; load average 0.5 on 2 cores)",
        "# with 2 workers: between 0:02:08 (if each run keeps that speed beside the others) and 0:04:16 (if they share "
        "it); start-up and evaluation not counted",
    ]
    # A real run says the same before it starts; a method without a measured speed is named, not guessed. 5 PPO runs of
    # 10M steps at 400 SPS: 125,000 s.
    result = run_benchmark(sandbox, *args[:2], "--seeds", "1", "--methods", "ppo sprig-pg", "--out", "out", "--no-plot")
    assert result.returncode == 0, result.stderr
    assert (
        "cost: 10 runs x 10,000,000 steps = 100,000,000 env steps\nwall time: about 34:43:20 one run at a time"
        in result.stdout
    )
    assert f"wall time leaves out sprig-pg (5 runs): no speed measured in {table}\n" in result.stdout
    # With --stop-at-step, what the command trains is each run up to its pause: 10 PPO runs of 1024 steps at 400 SPS.
    result = run_benchmark(sandbox, *args, "--methods", "ppo", "--stop-at-step", "1024", "--dry-run")
    assert result.stdout.splitlines()[1:3] == [
        "# cost: 10 runs x 1,024 steps = 10,240 env steps (up to --stop-at-step, of 2,048 each)",
        f"# wall time: about 0:00:26 one run at a time, at the speeds measured in {table} (PPO 400 SPS; flags after -- "
        "then: --async-envs; load average 0.5 on 2 cores)",
    ]


def test_the_speed_is_read_from_the_sps_column_by_its_header_wherever_it_stands(sandbox):
    table = write_speed_table(sandbox, "20260101-120000", "cleanrl", {})
    (table / "sps.csv").write_text(f"method,iterations,env,SPS\nPPO,3,{ENV},400\nSPRIG,3,{ENV},100\n")
    result = run_benchmark(sandbox, "--seeds", "1", "--total-timesteps", "4000", "--out", "out", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "(PPO 400 SPS, SPRIG 100 SPS;" in result.stdout  # not the iterations column, 3
    assert "# wall time: about 0:00:50 one run at a time" in result.stdout  # 4000 / 400 + 4000 / 100 seconds


def test_the_wall_time_can_come_from_the_speeds_another_machine_measured(sandbox):
    """--sps-from: what --sps wrote on another machine (the GPU machine the runs are for, say): its --out, its sps/, or
    one sps/DATE/, instead of this machine's OUT/sps."""
    write_speed_table(sandbox, "20260101-120000", "cleanrl", {"PPO": "100", "SPRIG": "100"})
    table = write_speed_table(sandbox, "20260102-120000", "cleanrl", {"PPO": "4000", "SPRIG": "1000"}, ["--async-envs"], "gpu")
    args = ["--seeds", "1", "--total-timesteps", "4000000", "--out", "out", "--dry-run"]
    # 4M steps at 100 SPS for each method here: 80,000 s; at 4000 and 1000 SPS there: 1,000 + 4,000 s.
    assert "# wall time: about 22:13:20 one run at a time" in run_benchmark(sandbox, *args).stdout
    for where in ("gpu", "gpu/sps", str(table)):
        assert run_benchmark(sandbox, *args, "--sps-from", where).stdout.splitlines()[2] == (
            f"# wall time: about 1:23:20 one run at a time, at the speeds measured in {table} (PPO 4000 SPS, SPRIG 1000 SPS; "
            "flags after -- then: --async-envs; load average 0.5 on 2 cores)"
        )
    (sandbox / "work" / "nothing").mkdir()
    assert (
        run_benchmark(sandbox, *args, "--sps-from", "nothing")
        .stdout.splitlines()[2]
        .startswith(
            f"# wall time: unknown, no speed measured with --preset cleanrl in {sandbox / 'work' / 'nothing'}; measure it"
        )
    )


def test_sps_dry_run_prints_the_commands_sps_runs_and_runs_nothing(sandbox):
    """--sps --dry-run: each method alone for --sps-iterations whole iterations of the runs' batch, then the table."""
    args = ("--sps", "--sps-iterations", "3", "--methods", "ppo sprig", "--out", "out", "--", "--num-steps", "16")
    dry_run = run_benchmark(sandbox, "--dry-run", *args)
    assert dry_run.returncode == 0, dry_run.stderr
    assert tree(sandbox / "work") == [] and fake_calls(sandbox) == []
    header, *commands = dry_run.stdout.splitlines()
    assert header.startswith("# --sps: 2 methods one at a time, 3 iterations each, into ")
    assert [line.count("--total-timesteps 384") for line in commands] == [1, 1, 0]  # 8 envs x 16 steps x 3 iterations
    assert run_benchmark(sandbox, *args).returncode == 0
    python = sandbox / "bin" / "python"
    ran = [
        f"cd {cwd} && OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} {python} {line} > log.txt 2>&1"
        for cwd, threads, line in fake_calls(sandbox)
    ]
    ran[-1] = f"{python} {fake_calls(sandbox)[-1][2]}"  # plot_results.py sps, from where benchmark.sh was called

    def dated(lines):
        return [re.sub(r"/sps/\d{8}-\d{6}", "/sps/DATE", line) for line in lines]

    assert dated(ran) == dated(commands)


def test_dry_run_of_the_cleanrl_preset_adds_no_hyperparameter_flags_and_passes_extra_flags(sandbox):
    result = run_benchmark(sandbox, "--dry-run", "--seeds", "1", "--", "--async-envs", "--no-norm-adv", "--track")
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if line.startswith("cd ")]
    assert len(commands) == 2
    for command in commands:  # what the run learns, then how it goes
        assert command.endswith("--seed 1 --total-timesteps 10000000 --no-norm-adv --checkpoint-every 25 --async-envs --track")


@pytest.mark.parametrize(
    "method, flags",
    [
        ("sprig-pg", "--leader-utility pg --exp-name sprig-pg"),  # Algorithm 1's printed leader utility
        ("sprig-implicit", "--leader-gradient implicit --exp-name sprig-implicit"),  # the implicit leader gradient
        ("sprig-joint", "--update joint --exp-name sprig-joint"),  # SPRIG's network trained as plain PPO
    ],
)
def test_a_sprig_variant_is_a_method_of_its_own_running_its_flags_in_its_own_dir(sandbox, method, flags):
    result = run_benchmark(sandbox, "--methods", f"ppo sprig {method}", "--seeds", "1", "--out", "out", "--no-plot")
    assert result.returncode == 0, result.stderr
    calls = {os.path.relpath(cwd, sandbox / "work" / "out" / "cleanrl" / ENV): args for cwd, _, args in fake_calls(sandbox)}
    assert set(calls) == {"ppo/seed1", "sprig/seed1", f"{method}/seed1"}
    assert calls[f"{method}/seed1"].split()[0].endswith("/repo/sprig_ppo_atari.py")
    assert calls[f"{method}/seed1"].endswith(f"--seed 1 --total-timesteps 10000000 {flags} --checkpoint-every 25")
    assert calls["sprig/seed1"].endswith("--seed 1 --total-timesteps 10000000 --checkpoint-every 25")  # no flag of its own
    assert (run_dir(sandbox, method, 1) / "done").exists()


def add_method_row(sandbox, row):
    """Add ROW (a Method(...) of methods.py) to the end of the sandbox's METHODS, and put the real plot_results.py
    beside it to read it."""
    methods = sandbox / "repo" / "methods.py"
    text = methods.read_text()
    end = text.index("\n)\n", text.index("\nMETHODS = (\n"))
    methods.write_text(text[:end] + f"\n    {row}," + text[end:])
    shutil.copy(os.path.join(REPO, "plot_results.py"), sandbox / "repo" / "plot_results.py")


def python_in_repo(sandbox, code):
    """Run `python -c CODE` in the sandbox's repo (where `import plot_results` finds its copy)."""
    return subprocess.run([sys.executable, "-c", code], cwd=sandbox / "repo", capture_output=True, text=True)


def test_a_method_is_one_row_of_the_methods_table_which_benchmark_sh_runs_and_plot_results_names_and_colours(sandbox):
    add_method_row(
        sandbox,
        'Method("sprig-half", "sprig_ppo_atari.py", ("--alpha-coop", "0.5"), "SPRIG half", "tab:gray", "alpha one half")',
    )

    help_text = run_benchmark(sandbox, "--help").stdout
    assert re.search(r"^ +sprig-half +sprig_ppo_atari.py --alpha-coop 0.5: alpha one half$", help_text, re.MULTILINE)
    unknown = run_benchmark(sandbox, "--methods", "dqn").stderr.strip()
    known = "ppo, sprig, sprig-pg, sprig-implicit, sprig-joint, sprig-cnn, sprig-scaled, sprig-scaled-joint, sprig-half"
    assert unknown == f"error: --methods: unknown method 'dqn' (known: {known}) (see --help)"
    result = run_benchmark(sandbox, "--methods", "sprig-half", "--seeds", "1", "--out", "out", "--no-plot")
    assert result.returncode == 0, result.stderr
    ((cwd, _, args),) = fake_calls(sandbox)
    assert cwd == str(run_dir(sandbox, "sprig-half", 1))
    assert args.split()[0].endswith("/repo/sprig_ppo_atari.py") and "--alpha-coop 0.5 --exp-name sprig-half" in args

    names = python_in_repo(
        sandbox, "import plot_results as p; print(p.method_name('sprig-half'), p.METHOD_COLORS['SPRIG half'])"
    )
    assert names.returncode == 0 and names.stdout.strip() == "SPRIG half tab:gray", names.stderr
    others = python_in_repo(sandbox, "import plot_results as p; print(p.OTHER_COLORS)")
    assert others.returncode == 0 and "tab:gray" not in others.stdout, others.stderr


@pytest.mark.parametrize(
    "row, error",
    [
        (
            'Method("sprig-half", "sprig_ppo_atari.py", (), "SPRIG half", "tab:brown", "no flags, so the script\'s exp_name")',
            "two methods with the exp_name sprig_ppo_atari",
        ),
        (
            'Method("sprig-half", "sprig_ppo_atari.py", ("--alpha-coop", "0.5"), "SPRIG", "tab:brown", "SPRIG\'s label")',
            "two methods with the label SPRIG",
        ),
        (
            'Method("sprig", "sprig_ppo_atari.py", ("--alpha-coop", "0.5"), "SPRIG half", "tab:brown", "sprig\'s name")',
            "two methods with the name sprig",
        ),
    ],
)
def test_a_methods_table_row_that_would_mix_two_methods_up_is_one_error_line(sandbox, row, error):
    """plot_results.py refuses to import (exit 1), benchmark.sh to start (exit 2), each with the same one line."""
    add_method_row(sandbox, row)
    result = python_in_repo(sandbox, "import plot_results")
    assert result.returncode == 1 and result.stderr.startswith("error: ") and error in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    checked = run_benchmark(sandbox, "--dry-run")
    assert checked.returncode == 2 and checked.stderr == result.stderr and checked.stdout == ""


def test_stop_at_step_pauses_real_runs_and_the_same_command_with_a_larger_stop_grows_them(tmp_path):
    """Real scripts, tiny iterations of 128 steps on the schedule of 640: paused at 256 (exit 4, the stop recorded in
    `paused`), left alone by the same command, grown to 512 by a larger stop, and finished (done) without one."""
    tiny = ["--num-envs", "2", "--num-steps", "64", "--num-minibatches", "2", "--update-epochs", "1", "--no-cuda"]
    base = ["--methods", "ppo sprig-joint", "--seeds", "1", "--total-timesteps", "640", "--workers", "2", "--no-plot"]
    base += ["--checkpoint-every", "0", "--out", str(tmp_path / "out")]

    def benchmark(*flags):
        result = subprocess.run(
            ["bash", os.path.join(REPO, "benchmark.sh"), *base, *flags, "--", *tiny],
            env=dict(os.environ, PYTHON=sys.executable),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    dirs = [tmp_path / "out" / "cleanrl" / ENV / method / "seed1" for method in ("ppo", "sprig-joint")]
    output = benchmark("--stop-at-step", "256")
    assert "0 ran, 0 already done (skipped), 2 paused at --stop-at-step" in output
    assert "paused at --stop-at-step 256, checkpointed; not done" in output
    for directory in dirs:
        assert (directory / "paused").read_text() == "256\n" and not (directory / "done").exists()
        assert "--update joint" in (directory / "command.txt").read_text() or directory.parent.name == "ppo"
    logs = [(directory / "log.txt").read_text() for directory in dirs]
    output = benchmark("--stop-at-step", "256")  # nothing to do: no run starts
    assert "2 paused at --stop-at-step" in output and [(d / "log.txt").read_text() for d in dirs] == logs
    assert "[paused at --stop-at-step 256: skip, until --stop-at-step grows]" in benchmark(
        "--stop-at-step", "256", "--dry-run"
    )
    output = benchmark("--stop-at-step", "500")  # paused in the iteration that reaches it, at 512
    assert "2 paused at --stop-at-step" in output
    for directory in dirs:
        assert (directory / "paused").read_text() == "500\n"  # the stop that paused it, from its exit status
        assert "resumed from" in (directory / "log.txt").read_text()
        assert "paused at step 512 (--stop-at-step 500)" in (directory / "log.txt").read_text()
    assert "2 ran, 0 already done" in benchmark()
    for directory in dirs:
        assert (directory / "done").exists() and not (directory / "paused").exists()
        assert len(list((directory / "runs").iterdir())) == 1  # one run, grown twice
        assert "iter 5/5 | step 640" in (directory / "log.txt").read_text()


def test_quick_runs_two_seeds_of_50000_steps_on_two_workers_with_cores_split(sandbox):
    result = run_benchmark(sandbox, "--quick", "--dry-run")
    assert result.returncode == 0, result.stderr
    matrix = [line.split() for line in result.stdout.splitlines() if line.split()[0] in ("ppo", "sprig")]
    assert sorted((fields[0], fields[2]) for fields in matrix) == [("ppo", "1"), ("ppo", "2"), ("sprig", "1"), ("sprig", "2")]
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    commands = [line for line in result.stdout.splitlines() if line.startswith("cd ")]
    assert all(
        "--total-timesteps 50000" in c and f"OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}" in c for c in commands
    )
    assert "2 workers" in result.stdout
    # Quick results go to their own directory, so they never stand in for full-length runs.
    assert all("/benchmark_results_quick/cleanrl/" in fields[3] for fields in matrix)


def test_each_run_runs_in_its_own_dir_with_log_command_and_done_marker(sandbox):
    result = run_benchmark(
        sandbox, "--seeds", "1 2", "--workers", "2", "--total-timesteps", "5000", "--out", "out", "--no-plot"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""  # a first run has no log yet, and says nothing about it
    threads = str(max(1, len(os.sched_getaffinity(0)) // 2))
    calls = training_calls(sandbox)
    assert len(calls) == 4
    for method, seed in itertools.product(["ppo", "sprig"], [1, 2]):
        directory = run_dir(sandbox, method, seed)
        script = "ppo_atari.py" if method == "ppo" else "sprig_ppo_atari.py"
        assert (directory / "done").exists()
        assert "iter 1/1" in (directory / "log.txt").read_text()
        command = (directory / "command.txt").read_text()
        assert command.startswith(f"cd {directory} && ") and f"OMP_NUM_THREADS={threads}" in command
        assert f"{script} --env-id {ENV} --seed {seed} --total-timesteps 5000" in command
        assert len(list((directory / "runs").glob(f"{ENV}__{script[:-3]}__{seed}__*/events.out.tfevents.*"))) == 1
        assert [
            (cwd, omp)
            for cwd, omp, args in calls
            if args.startswith(str(sandbox / "repo" / script)) and f"--seed {seed} " in args
        ] == [(str(directory), threads)]


OLD_RESULTS = os.path.join(REPO, "tests", "fixtures", "old_benchmark_results")


def test_a_results_directory_of_an_earlier_benchmark_sh_resumes_where_it_stopped(sandbox):
    """tests/fixtures/old_benchmark_results was made by the benchmark.sh of before benchmark.py, from a sandbox's work
    directory with this file's fake python, as OUT old_results of --preset paper --total-timesteps 4096
    --checkpoint-every 7 --no-plot -- --async-envs: ppo and sprig seed 1 interrupted (FAKE_INTERRUPT), then ppo seeds
    1 2 run to the end (seed 1 resumed), then sprig seed 2 failed (FAKE_FAIL=sprig_ppo_atari:2). The same command
    now skips the two done runs, resumes sprig seed 1 from its checkpoint and starts sprig seed 2 again. The fake
    python's checkpoints (a word of text) are kept as checkpoint.pt.fake, as no .pt file is committed."""
    shutil.copytree(OLD_RESULTS, sandbox / "work" / "out")
    for fake in (sandbox / "work" / "out").rglob("checkpoint.pt.fake"):
        fake.rename(fake.with_suffix(""))
    args = ["--methods", "ppo sprig", "--seeds", "1 2", "--total-timesteps", "4096", "--preset", "paper"]
    result = run_benchmark(sandbox, *args, "--checkpoint-every", "7", "--out", "out", "--no-plot", "--", "--async-envs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 ran, 2 already done (skipped), 0 paused" in result.stdout and result.stderr == ""
    resumed, restarted = run_dir(sandbox, "sprig", 1, preset="paper"), run_dir(sandbox, "sprig", 2, preset="paper")
    (checkpoint,) = (resumed / "runs").glob("*/checkpoint.pt")
    assert [(cwd, args.split(" --env-id")[0]) for cwd, _, args in training_calls(sandbox)] == [
        (str(resumed), str(sandbox / "repo" / "sprig_ppo_atari.py")),
        (str(restarted), str(sandbox / "repo" / "sprig_ppo_atari.py")),
    ]
    assert training_calls(sandbox)[0][2].endswith(f"--checkpoint-every 7 --async-envs --resume {checkpoint}")
    assert "--resume" not in training_calls(sandbox)[1][2] and "Traceback" not in (restarted / "log.txt").read_text()
    for method, seed in itertools.product(["ppo", "sprig"], [1, 2]):
        assert (run_dir(sandbox, method, seed, preset="paper") / "done").exists()


def test_finished_run_is_skipped_on_rerun(sandbox):
    assert run_benchmark(sandbox, "--methods", "ppo", "--seeds", "1", "--out", "out", "--no-plot").returncode == 0
    events_before = tree(run_dir(sandbox, "ppo", 1))
    result = run_benchmark(sandbox, "--methods", "ppo", "--seeds", "1 2", "--out", "out", "--no-plot")
    assert result.returncode == 0, result.stderr
    assert "ppo BeamRiderNoFrameskip-v4 1: already done, skipped" in result.stdout
    assert [args.split("--seed ")[1].split()[0] for _, _, args in training_calls(sandbox)] == ["1", "2"]
    assert tree(run_dir(sandbox, "ppo", 1)) == events_before


def test_killed_run_without_done_marker_is_cleaned_and_rerun(sandbox):
    directory = run_dir(sandbox, "sprig", 1)
    old_run = directory / "runs" / f"{ENV}__sprig_ppo_atari__1__1000"
    old_run.mkdir(parents=True)
    (old_run / "events.out.tfevents.1000.old").write_text("partial")
    (directory / "log.txt").write_text("partial log of the killed run\n")
    result = run_benchmark(sandbox, "--methods", "sprig", "--seeds", "1", "--out", "out", "--no-plot")
    assert result.returncode == 0, result.stderr
    assert "unfinished earlier run" in result.stdout
    assert not old_run.exists()
    assert len(list((directory / "runs").iterdir())) == 1  # never two runs of one combination
    assert "partial log" not in (directory / "log.txt").read_text()
    assert (directory / "done").exists() and len(training_calls(sandbox)) == 1


def test_runs_go_on_and_are_marked_done_after_the_reader_of_the_output_has_gone(sandbox):
    """`./benchmark.sh | head -1`: once head exits, what benchmark.py says is lost, not its runs."""
    environment = benchmark_environment(sandbox, FAKE_SLEEP="0.5")
    command = ["bash", str(sandbox / "repo" / "benchmark.sh"), "--methods", "ppo", "--seeds", "1 2", "--out", "out"]
    process = subprocess.Popen(command + ["--no-plot"], cwd=sandbox / "work", env=environment, stdout=subprocess.PIPE)
    process.stdout.readline()
    process.stdout.close()  # the reader has gone before the first run ended
    assert process.wait(timeout=30) == 0
    assert (run_dir(sandbox, "ppo", 1) / "done").exists() and (run_dir(sandbox, "ppo", 2) / "done").exists()


def test_failing_run_is_reported_with_its_log_path_and_the_others_finish(sandbox):
    result = run_benchmark(
        sandbox, "--seeds", "1 2", "--workers", "2", "--out", "out", "--no-plot", FAKE_FAIL="sprig_ppo_atari:2"
    )
    assert result.returncode != 0
    failed_log = run_dir(sandbox, "sprig", 2) / "log.txt"
    assert f"FAILED: sprig {ENV} 2; log: {failed_log}" in result.stderr
    assert "fake failure" in failed_log.read_text()
    assert not (run_dir(sandbox, "sprig", 2) / "done").exists()
    for method, seed in [("ppo", 1), ("sprig", 1), ("ppo", 2)]:
        assert (run_dir(sandbox, method, seed) / "done").exists()


def test_a_signature_is_the_flags_parsed_equal_whatever_their_order_and_with_flag_equals_value():
    line = f"ppo_atari.py --env-id {ENV} --seed 1 --clip-coef 0.2 --no-norm-adv"  # as `started` and `done` hold a run
    same = f"ppo_atari.py --no-norm-adv --seed=1 --clip-coef 0.2 --env-id={ENV} --checkpoint-every 5 --async-envs"
    assert signature(same) == signature(line)  # how a run checkpoints, or steps its envs, is not what it computes
    assert signature(f"{line} --cudagraphs --no-cuda") == signature(line)  # nor where its GPU work runs
    assert signature(f"{line} --track --save-model") == signature(line)  # nor what it tells W&B and saves at its end
    assert signature(f"{line} --seed 2 --seed 1") == signature(line)  # a flag given twice counts with its last value
    for other in [
        f"ppo_atari.py --env-id {ENV} --seed 2 --clip-coef 0.2 --no-norm-adv",
        f"ppo_atari.py --env-id {ENV} --seed 1 --clip-coef=0.1 --no-norm-adv",
        f"ppo_atari.py --env-id {ENV} --seed 1 --clip-coef 0.2",
        f"sprig_ppo_atari.py --env-id {ENV} --seed 1 --clip-coef 0.2 --no-norm-adv",
    ]:
        assert signature(other) != signature(line), other


def test_the_flags_that_do_not_make_a_run_another_are_those_its_script_resumes_under():
    """A run given other ones is the same run: skipped when done, resumed when checkpointed, which its script does."""
    import ppo_atari
    import sprig_ppo_atari

    assert ppo_atari.RESUME_FREE_FLAGS == sprig_ppo_atari.RESUME_FREE_FLAGS
    scripts = {f"--{name.replace('_', '-')}" for name in ppo_atari.RESUME_FREE_FLAGS - {"eval_checkpoint"}}
    assert {flag for flag in MACHINERY_FLAGS if not flag.startswith("--no-")} == scripts


def test_a_checkpoint_whose_run_no_started_file_describes_is_kept_not_cleaned_away(sandbox):
    checkpoint = run_dir(sandbox, "ppo", 1) / "runs" / f"{ENV}__ppo_atari__1__1000" / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("copied here by hand")
    result = run_benchmark(sandbox, "--methods", "ppo", "--seeds", "1", "--out", "out", "--no-plot")
    assert result.returncode == 1 and "(no 'started' file); delete it or use another --out" in result.stderr
    assert checkpoint.read_text() == "copied here by hand" and training_calls(sandbox) == []


def test_a_checkpointed_run_given_a_flag_that_does_not_change_what_it_learns_resumes(sandbox):
    flags = ["--methods", "ppo", "--seeds", "1", "--out", "out", "--no-plot"]
    assert run_benchmark(sandbox, *flags, FAKE_INTERRUPT="1").returncode == 1
    result = run_benchmark(sandbox, *flags, "--", "--no-cuda", "--track", "--save-model")
    assert result.returncode == 0 and "resuming the unfinished earlier run" in result.stdout, result.stdout + result.stderr
    assert training_calls(sandbox)[-1][2].endswith(
        "--checkpoint-every 25 --no-cuda --track --save-model --resume "
        + str(next(run_dir(sandbox, "ppo", 1).glob("runs/*/checkpoint.pt")))
    )


def test_a_done_run_asked_for_with_its_flags_reordered_or_as_flag_equals_value_is_skipped(sandbox):
    args = ["--methods", "ppo", "--seeds", "1", "--out", "out", "--no-plot", "--"]
    assert run_benchmark(sandbox, *args, "--clip-coef", "0.2", "--ent-coef", "0.02").returncode == 0
    result = run_benchmark(sandbox, *args, "--ent-coef=0.02", "--clip-coef=0.2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ppo BeamRiderNoFrameskip-v4 1: already done, skipped" in result.stdout and len(training_calls(sandbox)) == 1
    result = run_benchmark(sandbox, *args, "--ent-coef=0.03", "--clip-coef=0.2")
    assert result.returncode == 1 and "finished with other flags" in result.stderr and len(training_calls(sandbox)) == 1


def test_done_run_asked_for_with_other_flags_is_an_error_not_a_silent_skip(sandbox):
    args = ["--methods", "ppo", "--seeds", "1", "--out", "out", "--no-plot", "--total-timesteps"]
    assert run_benchmark(sandbox, *args, "5000").returncode == 0
    result = run_benchmark(sandbox, *args, "9000")
    assert result.returncode != 0
    assert "finished with other flags" in result.stderr and len(training_calls(sandbox)) == 1


def hold_lock(directory):
    """A process that holds DIRECTORY's run lock (an flock on .benchmark.lock) until killed."""
    directory.mkdir(parents=True, exist_ok=True)
    code = "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print(1, flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code, str(directory / ".benchmark.lock")], stdout=subprocess.PIPE)
    assert holder.stdout.readline() == b"1\n"
    return holder


def test_a_live_lock_is_left_to_its_holder_and_one_whose_holder_died_is_taken(sandbox):
    """The lock is the kernel's: a dead holder's is free (what it wrote stays), a live holder's is not, and a lock
    directory that the version before this one left is no lock."""
    ppo, sprig = run_dir(sandbox, "ppo", 1), run_dir(sandbox, "sprig", 1)
    dead, live = hold_lock(ppo), hold_lock(sprig)
    (ppo / ".lock").mkdir()
    (ppo / ".lock" / "owner").write_text("old-host 12345 -\n")
    dead.kill()
    dead.wait()
    try:
        result = run_benchmark(sandbox, "--seeds", "1", "--out", "out", "--no-plot")
        assert (ppo / "done").exists() and not (sprig / "done").exists()
        assert f"{sprig}: locked by another live run" in result.stdout and "running in another invocation" in result.stdout
        assert [args.split()[0] for _, _, args in training_calls(sandbox)] == [str(sandbox / "repo" / "ppo_atari.py")]
        assert is_locked(sprig) and not is_locked(ppo)
    finally:
        live.kill()
        live.wait()


def test_a_run_holds_its_lock_while_it_trains_even_if_the_benchmark_that_started_it_dies(sandbox):
    """The run inherits the lock: a second invocation leaves a run alone while it still trains."""
    hang_pids = sandbox / "hanging_pids.txt"
    environment = benchmark_environment(sandbox, FAKE_HANG=str(hang_pids))
    command = ["bash", str(sandbox / "repo" / "benchmark.sh"), "--methods", "ppo", "--seeds", "1", "--out", "out", "--no-plot"]
    first = subprocess.Popen(command, cwd=sandbox / "work", env=environment, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_file_lines(hang_pids, 1)
        first.kill()  # SIGKILL: no handler runs, the run it started goes on
        first.wait()
        (pid,) = map(int, hang_pids.read_text().split())
        assert pid_alive(pid) and is_locked(run_dir(sandbox, "ppo", 1))
        second = run_benchmark(sandbox, "--methods", "ppo", "--seeds", "1", "--out", "out", "--no-plot")
        assert "running in another invocation, left to it" in second.stdout and len(training_calls(sandbox)) == 1
    finally:
        for pid in map(int, hang_pids.read_text().split()) if hang_pids.exists() else []:
            os.killpg(pid, signal.SIGKILL)  # the fake run and its sleep: a session of their own


def test_terminating_the_benchmark_stops_its_training_runs(sandbox):
    hang_pids = sandbox / "hanging_pids.txt"
    environment = benchmark_environment(sandbox, FAKE_HANG=str(hang_pids))
    process = subprocess.Popen(
        ["bash", str(sandbox / "repo" / "benchmark.sh"), "--seeds", "1", "--workers", "2", "--out", "out", "--no-plot"],
        cwd=sandbox / "work",
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, so the cleanup below can never hit pytest's
    )
    pids = []
    try:
        deadline = time.time() + 20
        while len(pids) < 2 and time.time() < deadline:
            time.sleep(0.1)
            pids = [int(pid) for pid in hang_pids.read_text().split()] if hang_pids.exists() else []
        assert len(pids) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) != 0
        time.sleep(0.5)
        assert [pid for pid in pids if pid_alive(pid)] == []
    finally:  # whatever happened, leave no fake run (or its sleep) behind
        for pid in [process.pid, *pids]:
            try:
                if os.getpgid(pid) != os.getpgrp():
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()


def test_runs_not_yet_started_when_the_benchmark_is_stopped_are_left_untouched(sandbox):
    hang_pids = sandbox / "hanging_pids.txt"
    environment = benchmark_environment(sandbox, FAKE_HANG=str(hang_pids))
    (run_dir(sandbox, "ppo", 2) / "runs").mkdir(parents=True)  # an earlier run's partial output, no checkpoint
    command = [
        "bash",
        str(sandbox / "repo" / "benchmark.sh"),
        "--methods",
        "ppo",
        "--seeds",
        "1 2",
        "--out",
        "out",
        "--no-plot",
    ]
    process = subprocess.Popen(
        command, cwd=sandbox / "work", env=environment, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        wait_for_file_lines(hang_pids, 1)
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=30)
    finally:
        for pid in map(int, hang_pids.read_text().split()) if hang_pids.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    assert process.returncode == 130 and len(training_calls(sandbox)) == 1
    assert "[2/2]" not in stdout and os.listdir(run_dir(sandbox, "ppo", 2)) == ["runs"]  # neither cleaned nor locked


@pytest.mark.parametrize("stop", [["--stop-at-step", "64"], ["--stop_at_step=64"]])  # tyro takes either spelling
def test_a_stop_at_step_given_after_the_double_dash_pauses_the_run_too(sandbox, stop):
    args = ["--methods", "ppo", "--seeds", "1", "--out", "out", "--no-plot", "--", *stop]
    result = run_benchmark(sandbox, *args, FAKE_PAUSE="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 paused at --stop-at-step" in result.stdout and (run_dir(sandbox, "ppo", 1) / "paused").read_text() == "64\n"
    again = run_benchmark(sandbox, "--dry-run", *args)
    assert "[paused at --stop-at-step 64: skip, until --stop-at-step grows]" in again.stdout
    # Without it, the paused run is resumed from its checkpoint, not cleaned away.
    assert "[unfinished: resume from its checkpoint" in run_benchmark(sandbox, "--dry-run", *args[: -1 - len(stop)]).stdout


def test_plot_step_runs_plot_results_on_the_preset_dir_with_the_same_python(sandbox):
    result = run_benchmark(sandbox, "--methods", "ppo", "--seeds", "1", "--out", "out", "--preset", "paper")
    assert result.returncode == 0, result.stderr
    results_dir = sandbox / "work" / "out" / "paper"
    assert [args for _, _, args in fake_calls(sandbox) if "plot_results.py" in args] == [
        f"{sandbox / 'repo' / 'plot_results.py'} {results_dir}"
    ]
    assert f"{results_dir}/figure2.png" in result.stdout and f"{results_dir}/results.md" in result.stdout


@pytest.mark.parametrize("python", ["/nowhere/python", "no-such-python-here"])
@pytest.mark.parametrize("mode", [[], ["--sps"]])
def test_a_python_that_is_not_there_is_one_line_before_anything_is_written_and_a_warning_in_a_dry_run(sandbox, python, mode):
    result = run_benchmark(sandbox, "--methods", "ppo", "--seeds", "1", "--out", "out", *mode, PYTHON=python)
    assert result.returncode == 2 and result.stdout == ""
    assert (
        result.stderr == f"error: the python that runs the scripts, '{python}', is not a command here; name one with PYTHON=\n"
    )
    assert tree(sandbox / "work") == []
    dry_run = run_benchmark(sandbox, "--methods", "ppo", "--seeds", "1", "--dry-run", *mode, PYTHON=python)
    assert dry_run.returncode == 0 and tree(sandbox / "work") == []
    assert (f"# warning: the python that runs the scripts, '{python}', is not a command here" in dry_run.stdout) == (not mode)


def test_a_plot_that_fails_is_named_and_makes_the_exit_1_but_is_not_counted_as_a_run(sandbox):
    result = run_benchmark(sandbox, "--methods", "ppo", "--seeds", "1", "--out", "out", FAKE_PLOT_STATUS="1")
    assert result.returncode == 1
    assert f"plot_results.py {sandbox / 'work' / 'out' / 'cleanrl'}\n" in result.stderr and result.stderr.startswith(
        "failed: "
    )
    assert "summary: 1 ran, 0 already done (skipped)" in result.stdout and ", 0 failed" in result.stdout
    assert (run_dir(sandbox, "ppo", 1) / "done").exists()


# Stand-ins for a GPU machine's tools: `nvidia-smi -L` lists the GPUs, and nvidia-cuda-mps-control records each call in
# $FAKE_MPS_CALLS (beside the fake python's runs, so their order shows): its arguments, its environment's MPS
# directories, what it read on stdin (`quit`, without arguments), and how many of the runs in $FAKE_HANG still live.
NVIDIA_SMI = """#!/usr/bin/env bash
[[ $1 == -L ]] && printf '%s' '{listing}'
exit {status}
"""
MPS_CONTROL = r"""#!/usr/bin/env bash
stdin=""
if (($# == 0)); then
    stdin=$(cat)
fi
alive=0
for pid in $(cat "${FAKE_HANG:-/dev/null}" 2>/dev/null); do
    if kill -0 "$pid" 2>/dev/null; then alive=$((alive + 1)); fi
done
echo "mps|$*|${CUDA_MPS_PIPE_DIRECTORY:-}|${CUDA_MPS_LOG_DIRECTORY:-}|$stdin|$alive" >>"$FAKE_MPS_CALLS"
"""


def gpu_machine(sandbox, gpus=1, mps_control=True):
    """The environment that makes this machine one with GPUS GPUs (and nvidia-cuda-mps-control on PATH)."""
    directory = sandbox / "gpu"
    directory.mkdir(exist_ok=True)
    listing = "".join(f"GPU {i}: NVIDIA H200 (UUID: GPU-{i}0000000-0000-0000-0000-000000000000)\n" for i in range(gpus))
    tools = {"nvidia-smi": NVIDIA_SMI.format(listing=listing or "No devices were found\n", status=0 if gpus else 6)}
    if mps_control:
        tools["nvidia-cuda-mps-control"] = MPS_CONTROL
    for name, text in tools.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o755)
    path = f"{directory}{os.pathsep}{os.environ['PATH']}"
    return dict(PATH=path, CUDA_VISIBLE_DEVICES="0", FAKE_MPS_CALLS=str(sandbox / "mps_calls.txt"))


def mps_calls(sandbox):
    """[['mps', args, pipes, logs, stdin, runs alive] or ['run', cwd, pipes, logs], ...] in the order they came."""
    path = sandbox / "mps_calls.txt"
    return [line.split("|") for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("ending", ["finished", "failed", "interrupted"])
def test_two_workers_on_a_gpu_share_it_through_an_mps_daemon_started_for_them_and_stopped_after_their_last_run(
    sandbox, ending
):
    args = ["--seeds", "1 2", "--workers", "2", "--out", "out", "--no-plot"]
    environment = gpu_machine(sandbox)
    if ending == "interrupted":  # Ctrl-C while two runs train
        hang_pids = sandbox / "hanging_pids.txt"
        environment.update(PYTHON=str(sandbox / "bin" / "python"), FAKE_CALLS=str(sandbox / "calls.txt"))
        environment.update(FAKE_HANG=str(hang_pids))
        process = subprocess.Popen(
            ["bash", str(sandbox / "repo" / "benchmark.sh"), *args],
            cwd=sandbox / "work",
            env=dict(os.environ, **environment),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        wait_for_file_lines(hang_pids, 2)
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=30)
        returncode = process.returncode
    else:
        result = run_benchmark(
            sandbox, *args, **environment, **({"FAKE_FAIL": "sprig_ppo_atari:2"} if ending == "failed" else {})
        )
        stdout, returncode = result.stdout, result.returncode
    assert returncode == {"finished": 0, "failed": 1, "interrupted": 130}[ending], stdout
    pipes, logs = str(sandbox / "work" / "out" / "mps" / "pipe"), str(sandbox / "work" / "out" / "mps" / "log")
    calls = mps_calls(sandbox)
    assert calls[0] == ["mps", "-d", pipes, logs, "", "0"]
    assert calls[-1] == ["mps", "", pipes, logs, "quit", "0"]  # once, after the last run ended
    runs = calls[1:-1]
    assert len(runs) == (2 if ending == "interrupted" else 4)
    assert all(kind == "run" and directories == [pipes, logs] for kind, _, *directories in runs)
    assert [line for line in stdout.splitlines() if "MPS" in line] == [
        f"MPS: the runs share the GPU through an MPS control daemon started for them (pipes in {pipes}, logs in {logs}), "
        "stopped after the last run; --no-mps: without"
    ]


def wait_for_file_lines(path, count, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline and not (path.exists() and len(path.read_text().split()) >= count):
        time.sleep(0.1)
    assert path.exists() and len(path.read_text().split()) >= count


@pytest.mark.parametrize(
    "workers, gpus, flags", [("1", 1, []), ("2", 0, []), ("2", 1, ["--no-mps"]), ("2", 1, ["--", "--no-cuda"])]
)
def test_no_mps_daemon_for_one_worker_on_a_machine_without_a_gpu_with_no_mps_or_for_runs_without_cuda(
    sandbox, workers, gpus, flags
):
    result = run_benchmark(
        sandbox, "--seeds", "1", "--workers", workers, "--out", "out", "--no-plot", *flags, **gpu_machine(sandbox, gpus)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [call for call in mps_calls(sandbox) if call[0] == "mps"] == []
    assert [call[2:] for call in mps_calls(sandbox)] == [["", ""], ["", ""]]
    assert "MPS" not in result.stdout and not (sandbox / "work" / "out" / "mps").exists()


def test_without_nvidia_cuda_mps_control_the_runs_share_the_gpu_as_they_are_and_say_so(sandbox):
    result = run_benchmark(
        sandbox, "--seeds", "1", "--workers", "2", "--out", "out", **gpu_machine(sandbox, mps_control=False)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MPS: nvidia-cuda-mps-control is not on PATH: the runs time-slice the GPU\n" in result.stdout
    assert [call[2:] for call in mps_calls(sandbox)] == [["", ""], ["", ""]]


def test_an_out_too_deep_for_mps_sockets_puts_its_pipes_in_tmp(sandbox):
    """MPS's UNIX sockets live in its pipe directory, and a socket's path holds at most 107 bytes."""
    out = "out/" + "/".join(["a-directory-nested-deep"] * 4)
    result = run_benchmark(sandbox, "--seeds", "1", "--workers", "2", "--out", out, "--dry-run", **gpu_machine(sandbox))
    pipes = re.search(r"CUDA_MPS_PIPE_DIRECTORY=(\S+) CUDA_MPS_LOG_DIRECTORY=(\S+) ", result.stdout)
    assert re.fullmatch(r"/tmp/sprig-mps-\d+", pipes[1]) and pipes[2] == str(sandbox / "work" / out / "mps" / "log")


def test_an_mps_daemon_already_running_is_used_and_left_running(sandbox):
    running = sandbox / "mps-running"
    running.mkdir()
    (running / "control").write_text("")  # the daemon's control pipe
    environment = dict(gpu_machine(sandbox), CUDA_MPS_PIPE_DIRECTORY=str(running))
    result = run_benchmark(sandbox, "--seeds", "1", "--workers", "2", "--out", "out", "--no-plot", **environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"MPS: the runs share the GPU through the MPS control daemon already running (pipes in {running})" in result.stdout
    assert [call[0] for call in mps_calls(sandbox)] == ["run", "run"]  # neither started nor stopped here
    assert all(call[2] == str(running) for call in mps_calls(sandbox))


def test_on_a_gpu_every_run_gets_async_envs_which_leaves_its_signature_alone(sandbox):
    """Each run's process mostly waits on the GPU: its envs step in subprocesses, on the cores left idle. How the envs
    step changes no result, so a run done without them is done with them."""
    args = ["--seeds", "1", "--out", "out", "--no-plot"]
    assert run_benchmark(sandbox, *args).returncode == 0
    assert all("--async-envs" not in call for _, _, call in training_calls(sandbox))
    gpu = gpu_machine(sandbox)
    commands = [
        line for line in run_benchmark(sandbox, *args, "--dry-run", **gpu).stdout.splitlines() if line.startswith("cd ")
    ]
    assert len(commands) == 2 and all(command.endswith("--checkpoint-every 25 --async-envs") for command in commands)
    chosen = run_benchmark(sandbox, *args, "--dry-run", "--", "--no-async-envs", **gpu).stdout
    assert [line.split("--checkpoint-every 25")[1] for line in chosen.splitlines() if line.startswith("cd ")] == [
        " --no-async-envs",
        " --no-async-envs",
    ]
    result = run_benchmark(sandbox, *args, **gpu)
    assert result.returncode == 0 and result.stdout.count("already done, skipped") == 2, result.stdout + result.stderr
    assert "GPU (nvidia-smi -L): every run gets --async-envs" in result.stdout
    for given in ("--async-envs", "--async_envs", "--async-envs=True"):  # given, not added: no line says it is added
        assert "every run gets --async-envs" not in run_benchmark(sandbox, *args, "--dry-run", "--", given, **gpu).stdout


SLURM_COMMANDS = ("sbatch", "squeue", "scontrol", "scancel", "srun", "salloc", "sinfo", "sacct")


def path_without_slurm(sandbox):
    """PATH with Slurm's commands hidden, so that no test can submit a job by accident: a directory holding one of
    them (/usr/bin, where slurm-wlm is installed) is replaced by a mirror of it without them."""
    directories = []
    for directory in os.environ["PATH"].split(os.pathsep):
        if os.path.isdir(directory) and any(os.path.exists(os.path.join(directory, name)) for name in SLURM_COMMANDS):
            mirror = sandbox / "path" / directory.strip(os.sep).replace(os.sep, "_")
            if not mirror.exists():
                mirror.mkdir(parents=True)
                for name in set(os.listdir(directory)) - set(SLURM_COMMANDS):
                    os.symlink(os.path.join(directory, name), mirror / name)
            directory = str(mirror)
        directories.append(directory)
    return os.pathsep.join(directories)


def test_slurm_writes_a_job_array_with_one_task_per_combination(sandbox):
    result = run_benchmark(
        sandbox,
        "--slurm",
        "--seeds",
        "1 2 3",
        "--out",
        "out",
        "--partition",
        "gpu",
        "--time",
        "2:00:00",
        PATH=path_without_slurm(sandbox),
    )
    assert result.returncode == 0, result.stderr
    script = sandbox / "work" / "out" / "sprig_benchmark.sbatch"
    text = script.read_text()
    for directive in ["--array=0-5", "--partition=gpu", "--time=2:00:00", "--gpus=1", "--cpus-per-task=4"]:
        assert f"#SBATCH {directive}\n" in text
    # Warned 300 s before its limit, a task checkpoints and requeues itself, appending to its output.
    for directive in ["--signal=B:USR1@300", "--requeue", "--open-mode=append"]:
        assert f"#SBATCH {directive}\n" in text
    records = task_records(text)
    assert [(record["name"], record["seed"]) for record in records] == [
        (method, seed) for seed in (1, 2, 3) for method in ("ppo", "sprig")
    ]
    for record in records:
        script_name = "ppo_atari.py" if record["name"] == "ppo" else "sprig_ppo_atari.py"
        assert record["script"] == str(sandbox / "repo" / script_name)
        assert record["flags"] == ["--env-id", ENV, "--seed", str(record["seed"]), "--total-timesteps", "10000000"]
        assert record["machinery"] == ["--checkpoint-every", "25"]
        assert record["directory"] == str(run_dir(sandbox, record["name"], record["seed"]))
    assert "--no-cuda" not in text
    plot_script = sandbox / "work" / "out" / "sprig_benchmark_plot.sbatch"
    # How to submit both, since sbatch is not on PATH.
    assert f"id=$(sbatch --parsable {script}) && sbatch --dependency=afterany:${{id%%;*}} {plot_script}" in result.stdout
    for path in (script, plot_script):
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    assert tree(sandbox / "work" / "out") == ["sprig_benchmark.sbatch", "sprig_benchmark_plot.sbatch"]
    plot_text = plot_script.read_text()
    assert "#SBATCH --gpus" not in plot_text and "#SBATCH --partition=gpu\n" in plot_text
    assert f"plot_results.py {sandbox / 'work' / 'out' / 'cleanrl'} &&" in plot_text


def task_records(script):
    """The run records of a job array's tasks, in the order of their indices."""
    return [
        json.loads(shlex.split(line.strip())[0][len("run=") :]) for line in script.splitlines() if line.startswith("    run=")
    ]


def fake_sbatch(sandbox):
    """A fake sbatch on PATH that records its arguments, one call a line, and answers job ids 42, 43, ... as
    --parsable does; returns the PATH to run benchmark.sh with."""
    fake = sandbox / "bin" / "sbatch"
    calls = sandbox / "sbatch_args.txt"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >>{calls}\necho $((41 + $(wc -l <{calls})))\n')
    fake.chmod(0o755)
    return f"{sandbox / 'bin'}{os.pathsep}{path_without_slurm(sandbox)}"


def test_slurm_without_gpus_runs_on_cpu_and_submits_the_array_then_the_plot_job_after_it(sandbox):
    path = fake_sbatch(sandbox)
    result = run_benchmark(sandbox, "--slurm", "--methods", "ppo", "--seeds", "1", "--gpus", "0", "--out", "out", PATH=path)
    assert result.returncode == 0, result.stderr
    script = sandbox / "work" / "out" / "sprig_benchmark.sbatch"
    text = script.read_text()
    assert "#SBATCH --array=0-0\n" in text and "#SBATCH --gpus" not in text
    (record,) = task_records(text)
    assert record["flags"][-1] == "10000000" and record["machinery"] == ["--checkpoint-every", "25", "--no-cuda"]
    assert (sandbox / "sbatch_args.txt").read_text().splitlines() == [
        f"--parsable {script}",
        f"--parsable --dependency=afterany:42 {sandbox / 'work' / 'out' / 'sprig_benchmark_plot.sbatch'}",
    ]
    assert "submitted the job array: job 42, 1 tasks" in result.stdout and "the plot job: job 43" in result.stdout
    # --no-plot: no plot job; --time-margin 0: no warning, so no requeue either.
    (sandbox / "sbatch_args.txt").unlink()
    result = run_benchmark(
        sandbox, "--slurm", "--methods", "ppo", "--seeds", "1", "--out", "o2", "--no-plot", "--time-margin", "0", PATH=path
    )
    assert result.returncode == 0, result.stderr
    assert (sandbox / "sbatch_args.txt").read_text().splitlines() == [
        f"--parsable {sandbox / 'work' / 'o2' / 'sprig_benchmark.sbatch'}"
    ]
    assert "#SBATCH --signal" not in (sandbox / "work" / "o2" / "sprig_benchmark.sbatch").read_text()
    assert tree(sandbox / "work" / "o2") == ["sprig_benchmark.sbatch"]


def test_slurm_array_task_runs_the_combination_of_its_index(sandbox):
    result = run_benchmark(sandbox, "--slurm", "--seeds", "1 2", "--out", "out", PATH=path_without_slurm(sandbox))
    assert result.returncode == 0, result.stderr
    script = sandbox / "work" / "out" / "sprig_benchmark.sbatch"
    environment = dict(
        os.environ,
        PYTHON=str(sandbox / "bin" / "python"),
        FAKE_CALLS=str(sandbox / "calls.txt"),
        SLURM_ARRAY_TASK_ID="3",
        SLURM_CPUS_PER_TASK="4",
    )
    task = subprocess.run(["bash", str(script)], env=environment, capture_output=True, text=True, timeout=30)
    assert task.returncode == 0, task.stderr
    # Seed-major order: 0 ppo/1, 1 sprig/1, 2 ppo/2, 3 sprig/2.
    assert (run_dir(sandbox, "sprig", 2) / "done").exists()
    assert [(cwd, omp) for cwd, omp, _ in fake_calls(sandbox)] == [(str(run_dir(sandbox, "sprig", 2)), "4")]
    for method, seed in [("ppo", 1), ("sprig", 1), ("ppo", 2)]:
        assert not run_dir(sandbox, method, seed).exists()


def test_a_task_of_the_job_array_runs_with_only_its_own_script_and_index(sandbox):
    """Slurm runs a copy of the batch script from its spool directory. The copy alone, its index and PATH run the task:
    the script holds data and one call of benchmark.py, no shell function of benchmark's own."""
    result = run_benchmark(sandbox, "--slurm", "--seeds", "1 2", "--out", "out", PATH=path_without_slurm(sandbox))
    assert result.returncode == 0, result.stderr
    out = sandbox / "work" / "out"
    script = (out / "sprig_benchmark.sbatch").read_text()
    assert not re.search(r"^\s*(function\s+)?[\w-]+\s*\(\)", script, re.MULTILINE)
    spool = sandbox / "spool"
    spool.mkdir()
    (spool / "slurm_script").write_text(script)
    for path in out.iterdir():
        path.unlink()
    environment = {"PATH": path_without_slurm(sandbox), "FAKE_CALLS": str(sandbox / "calls.txt"), "SLURM_ARRAY_TASK_ID": "2"}
    task = subprocess.run(["bash", "slurm_script"], cwd=spool, env=environment, capture_output=True, text=True, timeout=30)
    assert task.returncode == 0, task.stdout + task.stderr
    assert [(cwd, omp) for cwd, omp, _ in fake_calls(sandbox)] == [(str(run_dir(sandbox, "ppo", 2)), "4")]
    assert (run_dir(sandbox, "ppo", 2) / "done").exists() and f"{run_dir(sandbox, 'ppo', 2)}: ran" in task.stdout


def start_slurm_task(sandbox, task_id, **env):
    """Write the sbatch script of ppo seeds 1 2, then start its array task TASK_ID as a plain process, as Slurm starts
    one (array job 42, the task's own job id 50 + TASK_ID), with a fake scontrol that records its arguments."""
    result = run_benchmark(
        sandbox, "--slurm", "--methods", "ppo", "--seeds", "1 2", "--out", "out", PATH=path_without_slurm(sandbox)
    )
    assert result.returncode == 0, result.stderr
    fake = sandbox / "bin" / "scontrol"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >>{sandbox / "scontrol_args.txt"}\n')
    fake.chmod(0o755)
    environment = dict(
        os.environ,
        PATH=f"{sandbox / 'bin'}{os.pathsep}{path_without_slurm(sandbox)}",
        FAKE_CALLS=str(sandbox / "calls.txt"),
        SLURM_ARRAY_JOB_ID="42",
        SLURM_ARRAY_TASK_ID=str(task_id),
        SLURM_JOB_ID=str(50 + task_id),
        SLURM_CPUS_PER_TASK="1",
    )
    environment.update(env)
    script = sandbox / "work" / "out" / "sprig_benchmark.sbatch"
    return subprocess.Popen(
        ["bash", str(script)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def scontrol_calls(sandbox):
    path = sandbox / "scontrol_args.txt"
    return path.read_text().splitlines() if path.exists() else []


def signal_when_training(task, pids, signum=signal.SIGUSR1):
    """Send signum to the task's shell once its (fake) training runs; return the task's (stdout, stderr)."""
    deadline = time.time() + 20
    while not pids.exists() and time.time() < deadline and task.poll() is None:
        time.sleep(0.1)
    assert pids.exists(), task.communicate()
    task.send_signal(signum)
    return task.communicate(timeout=30)


def test_a_slurm_task_warned_of_its_time_limit_checkpoints_requeues_itself_and_its_next_start_resumes(sandbox):
    pids = sandbox / "stoppable_pids.txt"
    task = start_slurm_task(sandbox, 1, FAKE_STOPPABLE="1", FAKE_STOPPABLE_PIDS=str(pids))
    out, err = signal_when_training(task, pids)
    assert task.returncode == 0, out + err
    assert "SIGUSR1: stopping the run" in out and "requeueing 42_1" in out
    assert scontrol_calls(sandbox) == ["requeue 42_1"]
    directory = run_dir(sandbox, "ppo", 2)
    (checkpoint,) = (directory / "runs").glob("*/checkpoint.pt")
    assert not (directory / "done").exists() and not is_locked(directory)
    # The next start, on another node, finds the lock file its first start wrote (say it was killed): no process holds
    # it any more, so it is free.
    (directory / ".benchmark.lock").write_text("some-other-node 12345 42_1\n")
    task = start_slurm_task(sandbox, 1, SLURM_RESTART_COUNT="1")
    out, err = task.communicate(timeout=30)
    assert task.returncode == 0, out + err
    assert "start 2," in out and f"resuming the unfinished earlier run from {checkpoint}" in out
    assert training_calls(sandbox)[-1][2].endswith(f"--resume {checkpoint}")
    assert (directory / "done").exists() and scontrol_calls(sandbox) == ["requeue 42_1"]  # finished: not requeued


def test_a_slurm_task_leaves_a_run_another_live_process_holds_alone(sandbox):
    holder = hold_lock(run_dir(sandbox, "ppo", 1))
    try:
        task = start_slurm_task(sandbox, 0)
        out, err = task.communicate(timeout=30)
    finally:
        holder.kill()
        holder.wait()
    assert task.returncode == 1 and "locked by another live run" in out
    assert "not requeued: the run is locked" in err
    assert training_calls(sandbox) == [] and scontrol_calls(sandbox) == []


def test_a_slurm_task_whose_run_made_no_progress_since_it_started_is_not_requeued(sandbox):
    """Warned, its run stopped with no new checkpoint (nothing done since this start): requeueing would loop."""
    pids = sandbox / "stoppable_pids.txt"
    task = start_slurm_task(sandbox, 0, FAKE_STOPPABLE="noprogress", FAKE_STOPPABLE_PIDS=str(pids))
    out, err = signal_when_training(task, pids)
    assert task.returncode == 3, out + err
    assert "not requeued: the run wrote no checkpoint since this start (no progress)" in err
    assert scontrol_calls(sandbox) == [] and not (run_dir(sandbox, "ppo", 1) / "done").exists()


def test_a_slurm_task_stopped_by_sigterm_checkpoints_and_is_not_requeued_by_itself(sandbox):
    pids = sandbox / "stoppable_pids.txt"
    task = start_slurm_task(sandbox, 0, FAKE_STOPPABLE="1", FAKE_STOPPABLE_PIDS=str(pids))
    out, err = signal_when_training(task, pids, signal.SIGTERM)
    assert task.returncode == 3, out + err
    assert "SIGTERM: stopping the run" in out and scontrol_calls(sandbox) == []
    directory = run_dir(sandbox, "ppo", 1)
    assert list((directory / "runs").glob("*/checkpoint.pt")) and not is_locked(directory)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env-ids", "BeamRiderNoFrameskip-v4 CartPole-v1"], "error: --env-ids: 'CartPole-v1' is not an Atari game id"),
        (["--methods", "ppo dqn"], "error: --methods: unknown method 'dqn' (known: ppo, sprig, sprig-pg, sprig-implicit,"),
        (["--preset", "fast"], "error: --preset: unknown preset 'fast' (known: cleanrl, paper)"),
        (["--games", "atari7"], "error: --games: unknown game set 'atari7' (known: atari5, atari3)"),
        (["--games", "atari5", "--env-ids", ENV], "error: --games and --env-ids do not go together"),
        (["--frobnicate"], "error: unrecognized arguments: --frobnicate (see --help)"),
        (["--workers", "two"], "error: --workers: must be a positive integer, got 'two'"),
        (["--workers", "0"], "error: --workers: must be a positive integer, got '0'"),
        (["--seeds"], "error: --seeds: expected one argument (see --help)"),
        (["--seeds", "1 2 1"], "error: a method, env id or seed is listed twice: "),
        (["--sweep", "alpha-coop=0.3 high"], "error: --sweep: alpha-coop: 'high' is not a number"),
        (["--sweep", "alpha-coop=0.3,0.7"], "error: --sweep: alpha-coop: '0.3,0.7' is not a number"),
        (["--sweep", "alpha-coop=0.3 .30"], "error: --sweep alpha-coop: the value .30 is listed twice"),
        (["--sweep", "alpha-coop=0.3", "--sweep", "alpha-coop=.3"], "error: --sweep alpha-coop: the value .3 is listed twice"),
        (["--env-ids", ""], "error: --env-ids: is empty"),
        (["--seeds", " "], "error: --seeds: is empty"),
        (["--sweep", "alpha-coop"], "error: --sweep: needs FLAG=VALUE [VALUE ...]"),
        (["--sweep", "alpha-coop="], "error: --sweep: alpha-coop: no values"),
        (["--sweep=--alpha-coop=0.3"], "error: --sweep: '--alpha-coop' is not a flag name"),
        (["--sweep", "seed=1 2"], "error: --sweep: --seed is set by benchmark.sh itself and cannot be swept"),
        (["--sweep", "stop-at-step=64 128"], "error: --sweep: --stop-at-step changes how a run goes, not what it computes"),
        (["--sweep", "alpha-coop=0.3", "--methods", "ppo"], "error: --sweep runs only sprig, and --methods 'ppo' asks for"),
        (["--sweep", "alpha-coop=0.3", "--methods", "sprig ppo"], "error: --sweep runs only sprig, and --methods 'sprig ppo'"),
        (["--gpus", "0"], "error: --gpus goes with --slurm, and without it would be ignored"),
        (["--time", "8:00:00"], "error: --time goes with --slurm, and without it would be ignored"),
        (["--sps-iterations", "3"], "error: --sps-iterations goes with --sps, and without it would be ignored"),
        (["--slurm", "--workers", "2"], "error: --workers and --slurm do not go together: each Slurm task runs one run"),
        (["--sps", "--stop-at-step", "100"], "error: --stop-at-step and --sps do not go together: --sps runs --sps-iter"),
        (["--sps", "--no-plot"], "error: --no-plot and --sps do not go together: --sps's speed table is what it makes"),
        (["--sps", "--checkpoint-every", "5"], "error: --checkpoint-every and --sps do not go together"),
        (["--sps", "--checkpoint-every", "0"], "error: --checkpoint-every and --sps do not go together"),
        (["--sps", "--", "--stop-at-step", "64"], "error: --stop-at-step after -- does not go with --sps: its runs train"),
        (["--sps", "--total-timesteps", "100"], "error: --total-timesteps and --sps do not go together: --sps runs"),
        (
            ["--sweep", "learning-rate=1e-4", "--preset", "paper"],
            "error: --sweep learning-rate: --learning-rate is also given",
        ),
        (["--sweep", "alpha-coop=0.3", "--sps"], "error: --sweep and --sps do not go together"),
        (["--no-mps", "--slurm"], "error: --no-mps and --slurm do not go together: a Slurm task has its GPU to itself"),
        (["--sps", "--no-mps"], "error: --no-mps and --sps do not go together: --sps runs one method at a time"),
        (["--sps-from", "nowhere"], "error: --sps-from: 'nowhere' is not a directory"),
        (["--sps", "--sps-from", "."], "error: --sps-from and --sps do not go together: --sps measures this machine's"),
        (["--slurm", "--sps-from", "."], "error: --sps-from and --slurm do not go together: --slurm estimates no wall time"),
        (["--slurm", "--time-margin", "5m"], "error: --time-margin: must be a non-negative integer up to 65535, got '5m'"),
        (["--slurm", "--time", "8h"], "error: --time: '8h' is not a Slurm time limit (MINUTES, H:MM:SS, DAYS-HH:MM:SS"),
        (["--slurm", "--time", "0:05:00"], "error: --time-margin 300 is not shorter than --time 0:05:00: no time"),
        (
            ["--slurm", "--time", "0-0:10", "--time-margin", "600"],
            "error: --time-margin 600 is not shorter than --time 0-0:10",
        ),
        (["--sps", "--sps-iterations", "1"], "error: --sps-iterations: must be an integer of at least 2, got '1'"),
        (["--sps", "--slurm"], "error: --sps and --slurm do not go together: --sps measures this machine's speeds"),
        (["--", "--stop-at-step", "1e5"], "error: --stop-at-step after --: must be a positive integer or None, got '1e5'"),
        (["--", "--stop_at_step=0"], "error: --stop-at-step after --: must be a positive integer or None, got '0'"),
        (["--", "--resume=--stop-at-step"], "error: --stop-at-step after --: must be a positive integer or None, got ''"),
        (
            ["--", "--async-envs", "--dry-run"],
            "error: --dry-run is an option of benchmark.sh, not of the runs: give it before",
        ),
        (["--", "--workers=2"], "error: --workers is an option of benchmark.sh, not of the runs: give it before --"),
        (["--", "--num-envs"], "error: --num-envs after --: must be a positive integer, got ''"),
        (["--sps", "--", "--num-steps=x"], "error: --num-steps after --: must be a positive integer, got 'x'"),
        (["--", "--seed", "3"], "error: --seed after --: benchmark.sh sets it for each run itself, from its --seeds"),
        (["--", "--total_timesteps=64"], "error: --total-timesteps after --: benchmark.sh sets it for each run itself, from"),
        (["--", "--exp-name", "mine"], "error: --exp-name after --: benchmark.sh sets it for each run itself, from its --me"),
    ],
)
def test_bad_options_exit_2_with_one_clear_line(sandbox, args, message):
    result = run_benchmark(sandbox, "--dry-run", *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith(message)
    assert tree(sandbox / "work") == []


def options_taking_a_value():
    """The options argparse takes a value for, so a new one is covered."""
    return [action.option_strings[0] for action in build_parser()._actions if action.option_strings and action.nargs != 0]


@pytest.mark.parametrize("option", options_taking_a_value())
def test_an_option_given_last_without_its_value_is_one_line_and_exit_2(sandbox, option):
    result = run_benchmark(sandbox, "--sps", option)
    assert result.returncode == 2
    assert result.stderr == f"error: {option}: expected one argument (see --help)\n"
    assert tree(sandbox / "work") == [] and fake_calls(sandbox) == []


def test_missing_training_script_is_a_clear_error_before_anything_runs(sandbox):
    (sandbox / "repo" / "sprig_ppo_atari.py").unlink()
    result = run_benchmark(sandbox, "--seeds", "1", "--out", "out")
    assert result.returncode == 2
    assert "sprig needs" in result.stderr and "sprig_ppo_atari.py, which does not exist" in result.stderr
    assert fake_calls(sandbox) == [] and tree(sandbox / "work") == []


def test_help_describes_workers_cores_and_presets(sandbox):
    result = run_benchmark(sandbox, "--help")
    assert result.returncode == 0
    for text in ["--workers", "about 2 cores", "OMP_NUM_THREADS", "--preset", PAPER_FLAGS, "--quick", "--slurm", "PYTHON"]:
        assert text in result.stdout


def test_sps_mode_measures_both_real_scripts_and_splits_the_time(tmp_path):
    """--sps with the real scripts (tiny iterations): one row per method, SPS and the three perf/* parts."""
    tiny = ["--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "1", "--no-cuda"]
    result = subprocess.run(
        ["bash", os.path.join(REPO, "benchmark.sh"), "--sps", "--sps-iterations", "2", "--out", str(tmp_path), "--", *tiny],
        env=dict(os.environ, PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| PPO |") or line.startswith("| SPRIG |")]
    assert [row.split("|")[1].strip() for row in rows] == ["PPO", "SPRIG"]
    for row in rows:
        sps, env_seconds, inference_seconds, update_seconds, iterations = (cell.strip() for cell in row.split("|")[3:8])
        assert float(sps) > 0 and iterations == "1"
        assert 0 < float(env_seconds) and 0 < float(inference_seconds) and 0 < float(update_seconds)
    (table,) = tmp_path.glob("sps/*/sps.md")
    assert table.read_text().count("\n") == 4
    with open(table.parent / "sps.csv") as file:
        speeds = {row["method"]: float(row["SPS"]) for row in csv.DictReader(file)}
    assert speeds == {row.split("|")[1].strip(): float(row.split("|")[3]) for row in rows}  # the table's, as data
    measured_with = json.loads((table.parent / "measured_with.json").read_text())
    assert measured_with["preset"] == "cleanrl" and measured_with["flags"] == tiny
    assert measured_with["cores"] == len(os.sched_getaffinity(0)) and measured_with["load"] >= 0
    # A later run of the same --out and --preset estimates its wall time from these speeds: 3 games x 5 seeds of 10M.
    dry_run = subprocess.run(
        ["bash", os.path.join(REPO, "benchmark.sh"), "--games", "atari3", "--dry-run", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    seconds = round(15 * 10_000_000 / speeds["PPO"] + 15 * 10_000_000 / speeds["SPRIG"])
    hours = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    assert f"# wall time: about {hours} (" in dry_run.stdout  # and its days, over two of them
    assert f"one run at a time, at the speeds measured in {table.parent} (PPO " in dry_run.stdout
    assert f"; flags after -- then: {' '.join(tiny)}; load average {measured_with['load']} on " in dry_run.stdout


def sweep_dir(sandbox, name, seed, out="out", preset="cleanrl", env_id=ENV):
    return sandbox / "work" / out / preset / env_id / name / f"seed{seed}"


def test_sweep_dry_run_runs_sprig_once_per_value_and_seed_with_the_value_in_flags_exp_name_and_dir(sandbox):
    result = run_benchmark(sandbox, "--dry-run", "--seeds", "1 2", "--out", "out", "--sweep", "alpha-coop=0.0 0.3 0.7 1.0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("# 8 runs = sprig at 4 swept values (alpha-coop: 0.0 0.3 0.7 1.0) x 1 envs x 2 seeds")
    matrix = [line.split() for line in lines if line.startswith("sprig")]
    assert [(fields[0], fields[2]) for fields in matrix] == [
        (f"sprig_alpha-coop={value}", seed) for seed in ["1", "2"] for value in ["0.0", "0.3", "0.7", "1.0"]
    ]
    directories = [fields[3] for fields in matrix]
    assert len(set(directories)) == 8
    assert directories[1] == str(sweep_dir(sandbox, "sprig_alpha-coop=0.3", 1))
    commands = [line for line in lines if line.startswith("cd ")]
    assert len(commands) == 8 and not any("ppo_atari.py" in command.replace("sprig_ppo_atari.py", "") for command in commands)
    assert commands[1] == (
        f"cd {sweep_dir(sandbox, 'sprig_alpha-coop=0.3', 1)} && OMP_NUM_THREADS={len(os.sched_getaffinity(0))} "
        f"MKL_NUM_THREADS={len(os.sched_getaffinity(0))} {sandbox / 'bin' / 'python'} {sandbox / 'repo' / 'sprig_ppo_atari.py'} "
        f"--env-id {ENV} --seed 1 --total-timesteps 10000000 --alpha-coop 0.3 --exp-name sprig_alpha-coop=0.3 --checkpoint-every 25"
    )
    plots = [line for line in lines if "plot_results.py" in line]
    assert plots[-1].endswith(f"plot_results.py tradeoff {sandbox / 'work' / 'out' / 'cleanrl'}")
    assert tree(sandbox / "work") == [] and fake_calls(sandbox) == []
    assert "only sprig (no other --methods)" in run_benchmark(sandbox, "--help").stdout


def test_two_sweeps_vary_one_flag_each_and_keep_preset_and_extra_flags(sandbox):
    result = run_benchmark(
        sandbox,
        "--dry-run",
        "--seeds",
        "3",
        "--out",
        "out",
        "--preset",
        "paper",
        "--sweep",
        "alpha-coop=0.3 1",
        "--sweep=attn-cost-coef=0 1e-4 1e-3",
        "--",
        "--async-envs",
    )
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if line.startswith("cd ")]
    swept = ["--alpha-coop 0.3", "--alpha-coop 1", "--attn-cost-coef 0", "--attn-cost-coef 1e-4", "--attn-cost-coef 1e-3"]
    assert len(commands) == 5
    for command, flag in zip(commands, swept):
        name = "sprig_" + flag[2:].replace(" ", "=")
        assert command.startswith(f"cd {sweep_dir(sandbox, name, 3, preset='paper')} && ")
        assert command.endswith(
            f"--seed 3 --total-timesteps 10000000 {flag} --exp-name {name} {PAPER_FLAGS} --checkpoint-every 25 --async-envs"
        )


def test_sweep_runs_each_value_in_its_own_dir_skips_finished_ones_and_plots_the_tradeoff(sandbox):
    args = ["--seeds", "1", "--out", "out", "--sweep", "alpha-coop=0.0 0.5"]
    assert run_benchmark(sandbox, *args).returncode == 0
    result = run_benchmark(sandbox, *args[:-1], "alpha-coop=0.0 0.5 1.0")
    assert result.returncode == 0, result.stderr
    assert "sprig_alpha-coop=0.5 BeamRiderNoFrameskip-v4 1: already done, skipped" in result.stdout
    calls = training_calls(sandbox)
    assert [cwd for cwd, _, _ in calls] == [str(sweep_dir(sandbox, f"sprig_alpha-coop={v}", 1)) for v in ["0.0", "0.5", "1.0"]]
    for value in ["0.0", "0.5", "1.0"]:
        assert (sweep_dir(sandbox, f"sprig_alpha-coop={value}", 1) / "done").exists()
    results_dir = sandbox / "work" / "out" / "cleanrl"
    plots = [args for _, _, args in fake_calls(sandbox) if "plot_results.py" in args]
    assert plots[-2:] == [
        f"{sandbox / 'repo' / 'plot_results.py'} {results_dir}",
        f"{sandbox / 'repo' / 'plot_results.py'} tradeoff {results_dir}",
    ]


def test_a_run_interrupted_after_checkpointing_is_not_done_and_the_rerun_resumes_it(sandbox):
    flags = ["--methods", "ppo", "--seeds", "1", "--out", "out", "--no-plot", "--checkpoint-every", "7"]
    result = run_benchmark(sandbox, *flags, FAKE_INTERRUPT="1")
    directory = run_dir(sandbox, "ppo", 1)
    assert "interrupted after" in result.stdout and "run the same command again to resume" in result.stderr
    assert not (directory / "done").exists()
    (checkpoint,) = (directory / "runs").glob("*/checkpoint.pt")
    assert "resume from its checkpoint" in run_benchmark(sandbox, *flags, "--dry-run").stdout
    result = run_benchmark(sandbox, *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resuming the unfinished earlier run from {checkpoint}" in result.stdout
    first, second = [args for _, _, args in training_calls(sandbox)]
    assert "--checkpoint-every 7" in first and "--resume" not in first
    assert second.endswith(f"--checkpoint-every 7 --resume {checkpoint}")
    assert (directory / "done").exists() and len(list((directory / "runs").iterdir())) == 1
    assert (checkpoint.parent / "events.out.tfevents.0.fake").read_text() == "fake\nfake\n"  # one run, continued


def test_the_exit_status_tells_how_a_run_ended_not_what_its_log_says(sandbox):
    """A run that exits 0 finished, whatever its output holds; the fake's exit 3 (interrupted) is tested above."""
    flags = ["--methods", "ppo", "--seeds", "1", "--out", "out", "--no-plot"]
    said = "interrupted at step 64; resume with: python ppo_atari.py --resume x\npaused at step 64 (--stop-at-step 64); go on"
    result = run_benchmark(sandbox, *flags, FAKE_SAYS=said)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 ran, 0 already done" in result.stdout
    assert (run_dir(sandbox, "ppo", 1) / "done").exists() and not (run_dir(sandbox, "ppo", 1) / "paused").exists()


def test_a_checkpointed_run_asked_for_with_other_flags_is_refused_and_its_checkpoint_kept(sandbox):
    """Its script would refuse the checkpoint under other flags, and starting afresh would delete it: an error, and the
    run's directory left as it is; with its own flags, the dry run shows the command that resumes it."""
    flags = ["--methods", "ppo", "--seeds", "1", "--out", "out", "--no-plot"]
    first = run_benchmark(sandbox, *flags, FAKE_INTERRUPT="1")
    assert first.returncode == 1 and "1 interrupted (checkpointed), 0 not run (other flags), 0 failed" in first.stdout
    before = tree(run_dir(sandbox, "ppo", 1))
    (checkpoint,) = run_dir(sandbox, "ppo", 1).glob("runs/*/checkpoint.pt")
    result = run_benchmark(sandbox, *flags, "--total-timesteps", "4096")
    assert result.returncode == 1 and len(training_calls(sandbox)) == 1, result.stdout + result.stderr
    assert f"error: {run_dir(sandbox, 'ppo', 1)} holds a checkpoint of a run with other flags (ppo_atari.py " in result.stderr
    assert "1 not run (other flags), 0 failed" in result.stdout and tree(run_dir(sandbox, "ppo", 1)) == before
    dry = run_benchmark(sandbox, *flags, "--total-timesteps", "4096", "--dry-run").stdout
    assert "[done or checkpointed with other flags: conflict, left as it is]" in dry
    dry = run_benchmark(sandbox, *flags, "--dry-run").stdout
    assert "[unfinished: resume from its checkpoint, with the same command]" in dry and f"--resume {checkpoint}\n" in dry


def python_3_8():
    """A python 3.8 that runs, if this machine has one (on PATH, or pyenv's, whose shim may not be active)."""
    candidates = [shutil.which("python3.8"), *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))]
    for python in filter(None, candidates):
        if (
            subprocess.run([python, "-c", "import sys; assert sys.version_info[:2] == (3, 8)"], capture_output=True).returncode
            == 0
        ):
            return python
    return None


PYTHON_3_8 = python_3_8()


@pytest.mark.skipif(PYTHON_3_8 is None, reason="needs a python 3.8 (pyenv has one on this machine)")
def test_benchmark_py_runs_under_the_oldest_python_benchmark_sh_promises(tmp_path):
    """benchmark.sh says 3.8 or newer: its --help and its dry runs, which touch every option, run there."""
    for args in (["--help"], ["--dry-run", "--quick"], ["--dry-run", "--slurm", "--gpus", "0"], ["--dry-run", "--sps"]):
        command = [PYTHON_3_8, os.path.join(REPO, "benchmark.py"), *args, *(["--out", str(tmp_path)] if args[1:] else [])]
        result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0 and result.stderr == "", (args, result.stderr)
