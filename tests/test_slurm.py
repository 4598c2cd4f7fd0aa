"""benchmark.sh --slurm on a real Slurm: a one-node cluster on this machine, the real training scripts, tiny runs.

The module's cluster (fixture `cluster`) is munged, slurmctld and slurmd of Debian's slurm-wlm, with their own
slurm.conf (through SLURM_CONF), munge key and socket, ports, and state, spool and log directories, all in a temporary
directory; the daemons are stopped by pid at the end. Slurm warns a task of its time limit with SIGUSR1 up to 60 s
early, so the tests send that warning themselves (scancel --signal=USR1 --batch), and start a requeued task at once
(scontrol update StartTime=now) instead of after Slurm's two-minute wait. Without Slurm (or as another user than
root, which the daemons need here) the tests skip; CI installs Slurm and sets SPRIG_REQUIRE_SLURM=1, which turns the
skip into a failure.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import REPO, is_locked, pid_alive, read_scalars

ENV = "BeamRiderNoFrameskip-v4"
# A requeued task waits this long before it starts again (Slurm's job credential lifetime, 120 s unless set).
CRED_EXPIRE = 10
ITERATIONS = 10  # of 2 envs x 64 steps: long enough to be stopped half-way
TINY = ["--num-envs", "2", "--num-steps", "64", "--num-minibatches", "2", "--update-epochs", "1", "--max-episode-steps", "100"]
# Every run of this module: one seed, no GPU, one CPU (one thread, so float sums are the same in every run).
BENCHMARK = ["--slurm", "--seeds", "1", "--total-timesteps", str(128 * ITERATIONS), "--gpus", "0", "--cpus-per-task", "1"]
BENCHMARK += ["--time", "10", "--time-margin", "60"]

if shutil.which("slurmctld") is None or shutil.which("munged") is None:
    MISSING = "Slurm is not installed; as root: apt-get update && apt-get install -y slurm-wlm munge"
elif os.geteuid() != 0:
    MISSING = "the test cluster's daemons run as root (SlurmUser=root); run these tests as root"
else:
    MISSING = None
pytestmark = pytest.mark.skipif(MISSING is not None and not os.environ.get("SPRIG_REQUIRE_SLURM"), reason=str(MISSING))


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for each in sockets:
        each.bind(("127.0.0.1", 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    return ports


def wait_for(condition, what, timeout=120, interval=0.5):
    """Poll condition() until it returns something true, and return that; fail naming `what` after timeout s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Cluster:
    def __init__(self, base):
        self.base = base
        self.env = dict(os.environ, SLURM_CONF=str(base / "slurm.conf"), PYTHON=sys.executable)

    def run(self, *command, check=True):
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def benchmark(self, out, *flags):
        """benchmark.sh --slurm with this module's flags, its runs in OUT; returns its output and the jobs it submitted."""
        result = subprocess.run(
            ["bash", os.path.join(REPO, "benchmark.sh"), *BENCHMARK, "--out", str(out), *flags, "--", *TINY],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        array = re.search(r"submitted the job array: job (\d+)", result.stdout).group(1)
        plot = re.search(r"submitted the plot job: job (\d+)", result.stdout)
        return result.stdout, array, plot and plot.group(1)

    def job(self, job_id):
        """{field: value} of `scontrol show job` (JobState, Restarts, ...), or {} once Slurm has forgotten it."""
        text = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        return dict(re.findall(r"(\w+)=(\S*)", text.splitlines()[0])) if text.strip() else {}

    def ended_or_requeued(self, job_id):
        """The job's fields once it has been requeued or has ended; None while it runs, and while it is COMPLETING
        (a requeued job passes through that state, its old start still cleaning up, before it is PENDING again)."""
        job = self.job(job_id)
        if job.get("JobState") == "COMPLETING":
            return None
        if job.get("Restarts", "0") != "0" or job.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
            return job
        return None

    def queue(self):
        return self.run("squeue", "-h", "-o", "%i %T").split()

    def wait_until_idle(self, timeout=180):
        wait_for(lambda: not self.queue(), "the queue to empty", timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if MISSING is not None:
        pytest.fail(MISSING)  # SPRIG_REQUIRE_SLURM is set: Slurm must be here
    base = tmp_path_factory.mktemp("slurm")
    for directory in ("munge", "state", "spool", "log"):
        (base / directory).mkdir()
    (base / "munge").chmod(0o755)  # munged wants its socket's directory open to all
    key = base / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    munge_socket = base / "munge" / "munge.socket"
    controller_port, node_port = free_ports(2)
    cpus = len(os.sched_getaffinity(0))
    (base / "slurm.conf").write_text(f"""ClusterName=sprigtest
SlurmctldHost=localhost
SlurmctldPort={controller_port}
SlurmdPort={node_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket},cred_expire={CRED_EXPIRE}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={base / "state"}
SlurmdSpoolDir={base / "spool"}
SlurmctldPidFile={base / "slurmctld.pid"}
SlurmdPidFile={base / "slurmd.pid"}
SlurmctldLogFile={base / "log" / "slurmctld.log"}
SlurmdLogFile={base / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SchedulerParameters=sched_interval=2,bf_interval=2
SlurmdParameters=config_overrides
MinJobAge=3600
MailProg=/bin/true
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
    cluster = Cluster(base)
    pid_files = []
    try:
        munge = base / "munge"
        subprocess.run(
            ["munged", "--force", f"--socket={munge_socket}", f"--key-file={key}", f"--log-file={munge / 'munged.log'}"]
            + [f"--pid-file={munge / 'munged.pid'}", f"--seed-file={munge / 'munged.seed'}"],
            check=True,
            timeout=30,
        )
        pid_files.append(munge / "munged.pid")
        for daemon, pid_file in (("slurmctld", "slurmctld.pid"), ("slurmd", "slurmd.pid")):
            command = [daemon] + (["-N", "localhost"] if daemon == "slurmd" else [])
            subprocess.run(command, env=cluster.env, check=True, timeout=30)  # each forks into the background
            pid_files.append(base / pid_file)
        try:
            wait_for(lambda: cluster.run("sinfo", "-h", "-o", "%T", check=False).strip() == "idle", "the node", 60)
        except AssertionError as error:
            logs = "".join((base / "log" / name).read_text()[-2000:] for name in ("slurmctld.log", "slurmd.log"))
            raise AssertionError(f"{error} to be idle; the daemons' logs end with:\n{logs}") from None
        yield cluster
    finally:
        if cluster.run("squeue", "-h", check=False).strip():
            cluster.run("scancel", "--user", "root", check=False)
            wait_for(lambda: not cluster.run("squeue", "-h", check=False).strip(), "the cancelled jobs to end", 60)
        pids = [int(path.read_text()) for path in reversed(pid_files) if path.exists()]
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not any(pid_alive(pid) for pid in pids), "the daemons to stop", 30, 0.2)


def run_dir(out, method, seed=1):
    return out / "cleanrl" / ENV / method / f"seed{seed}"


def job_output(out, job_id, task=None):
    name = f"slurm-{job_id}_{task}.out" if task is not None else f"slurm-plot-{job_id}.out"
    return (out / name).read_text()


def wait_for_log(directory, text):
    """Wait until the run in directory has logged text (a progress line: 'iter 2/')."""
    path = directory / "log.txt"
    wait_for(lambda: path.exists() and text in path.read_text(), f"{text!r} in {path}", interval=0.1)


def scalars(directory):
    (run,) = (directory / "runs").iterdir()
    return read_scalars(str(run))


@pytest.fixture(scope="module")
def array_run(cluster, tmp_path_factory):
    """ppo and sprig (one seed, a few iterations) as a job array, then its plot job; waited for."""
    out = tmp_path_factory.mktemp("array")
    output, array, plot = cluster.benchmark(out, "--methods", "ppo sprig")
    dependency = cluster.job(plot)["Dependency"]  # as submitted: the tasks take seconds to end
    cluster.wait_until_idle()
    return {"out": out, "output": output, "array": array, "plot": plot, "dependency": dependency}


def test_a_job_array_of_tiny_runs_completes_and_the_plot_job_after_it_writes_results(cluster, array_run):
    out, array, plot = array_run["out"], array_run["array"], array_run["plot"]
    assert array_run["dependency"].startswith(f"afterany:{array}_*"), array_run["dependency"]
    assert cluster.job(plot)["JobState"] == "COMPLETED", job_output(out, plot)
    for task, method in enumerate(("ppo", "sprig")):
        job = cluster.job(f"{array}_{task}")
        assert (job["JobState"], job["Restarts"]) == ("COMPLETED", "0"), job_output(out, array, task)
        assert (run_dir(out, method) / "done").exists()
        assert f"iter {ITERATIONS}/{ITERATIONS} | step {128 * ITERATIONS}" in (run_dir(out, method) / "log.txt").read_text()
        assert f"task {array}_{task}, start 1, on " in job_output(out, array, task)
    # The plot job started only once both tasks had ended, plotted what they finished and found nothing left undone.
    plot_job = cluster.job(plot)
    assert min(cluster.job(f"{array}_{task}")["EndTime"] for task in (0, 1)) <= plot_job["StartTime"]
    assert "2 of 2 runs done, 0 not done" in job_output(out, plot)
    results = (out / "cleanrl" / "results.md").read_text()
    assert "PPO" in results and "SPRIG" in results
    assert "#SBATCH --gpus" not in (out / "sprig_benchmark_plot.sbatch").read_text()


def test_a_task_warned_of_its_time_limit_checkpoints_requeues_and_finishes_as_the_uninterrupted_run(
    cluster, array_run, tmp_path
):
    out = tmp_path
    directory = run_dir(out, "ppo")
    _, array, plot = cluster.benchmark(out, "--methods", "ppo")
    task = f"{array}_0"
    wait_for_log(directory, f"iter 2/{ITERATIONS}")
    cluster.run("scancel", "--signal=USR1", "--batch", task)  # Slurm's warning, --time-margin before the limit
    requeued = wait_for(lambda: cluster.ended_or_requeued(task), "the task to requeue itself or end", 60)
    assert requeued["Restarts"] == "1", job_output(out, array, 0)
    assert requeued["JobState"] == "PENDING" and requeued["Reason"] == "BeginTime", requeued  # waits CRED_EXPIRE s
    cluster.wait_until_idle()
    output = job_output(out, array, 0)
    assert cluster.job(task)["JobState"] == "COMPLETED" and cluster.job(task)["Restarts"] == "1", output
    assert "SIGUSR1: stopping the run" in output and f"requeueing {task}" in output
    assert f"task {task}, start 2, on " in output and "resuming the unfinished earlier run from" in output
    log = (directory / "log.txt").read_text()
    stopped_at = int(re.search(r"^interrupted at step (\d+);", log, re.M).group(1))
    assert 256 <= stopped_at < 128 * ITERATIONS
    assert re.search(rf"^resumed from \S+checkpoint\.pt at iteration {stopped_at // 128}, step {stopped_at}$", log, re.M)
    assert (directory / "done").exists() and not is_locked(directory)
    # Every step trained once, and exactly as in the array's uninterrupted run of the same flags.
    warned, whole = scalars(directory), scalars(run_dir(array_run["out"], "ppo"))
    assert [step for step, _ in warned["losses/value_loss"]] == [128 * i for i in range(1, ITERATIONS + 1)]
    for tag in ("losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/approx_kl", "charts/learning_rate"):
        assert warned[tag] == whole[tag], tag
    # The plot job waited for the requeued task to finish, not for its first start to end.
    assert "1 of 1 runs done, 0 not done" in job_output(out, plot)


def test_a_cancelled_task_resumes_when_the_same_command_runs_again_and_finished_runs_are_skipped(cluster, array_run):
    """In the array's directory: ppo seed 1 is done there already; seed 2 is new, and cancelled half-way."""
    out = array_run["out"]
    flags = ["--methods", "ppo", "--seeds", "1 2", "--no-plot"]
    done, cancelled = run_dir(out, "ppo", 1), run_dir(out, "ppo", 2)
    done_log = (done / "log.txt").read_text()
    output, array, _ = cluster.benchmark(out, *flags)
    wait_for_log(cancelled, f"iter 2/{ITERATIONS}")
    cluster.run("scancel", f"{array}_1")
    cluster.wait_until_idle()
    assert cluster.job(f"{array}_1")["JobState"] == "CANCELLED" and cluster.job(f"{array}_1")["Restarts"] == "0"
    assert re.search(r"^interrupted at step \d+;", (cancelled / "log.txt").read_text(), re.M)
    (checkpoint,) = (cancelled / "runs").glob("*/checkpoint.pt")
    assert not (cancelled / "done").exists() and not is_locked(cancelled)
    output, again, _ = cluster.benchmark(out, *flags)
    cluster.wait_until_idle()
    assert f"{done}: skipped" in job_output(out, again, 0) and (done / "log.txt").read_text() == done_log
    assert f"{done}: skipped" in job_output(out, array, 0)
    assert f"resuming the unfinished earlier run from {checkpoint}" in job_output(out, again, 1)
    assert (cancelled / "done").exists() and len(list((cancelled / "runs").iterdir())) == 1
    losses = scalars(cancelled)["losses/value_loss"]
    assert [step for step, _ in losses] == [128 * i for i in range(1, ITERATIONS + 1)]


def test_a_run_that_fails_is_not_requeued(cluster, tmp_path):
    """Task 0 fails while it writes its checkpoint after the warning (a directory stands where it goes); task 1 fails
    at its start (an env id the scripts do not know). Neither is requeued."""
    directory = run_dir(tmp_path, "ppo")
    _, array, _ = cluster.benchmark(tmp_path, "--methods", "ppo", "--env-ids", f"{ENV} NopeNoFrameskip-v4", "--no-plot")
    wait_for_log(directory, f"iter 1/{ITERATIONS}")
    (run,) = (directory / "runs").iterdir()
    (run / "checkpoint.pt" / "in-the-way").mkdir(parents=True)
    cluster.run("scancel", "--signal=USR1", "--batch", f"{array}_0")
    cluster.wait_until_idle()
    for task in (0, 1):
        job = cluster.job(f"{array}_{task}")
        assert (job["JobState"], job["Restarts"]) == ("FAILED", "0"), job_output(tmp_path, array, task)
        assert "not requeued: the run failed" in job_output(tmp_path, array, task)
    assert "SIGUSR1: stopping the run" in job_output(tmp_path, array, 0)
    assert "IsADirectoryError" in (directory / "log.txt").read_text()
    unknown = tmp_path / "cleanrl" / "NopeNoFrameskip-v4" / "ppo" / "seed1" / "log.txt"
    assert "error: unknown --env-id 'NopeNoFrameskip-v4'" in unknown.read_text()
    assert not (directory / "done").exists() and not is_locked(directory)
