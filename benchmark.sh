#!/usr/bin/env bash
# Run the PPO-vs-SPRIG benchmark: every (method x env x seed) combination, resumable, then plot the results.
# See `./benchmark.sh --help`. Each run gets its own directory $OUT/$PRESET/$ENV/$METHOD/seed$SEED/ (with --sweep,
# $METHOD is sprig_FLAG=VALUE) holding the training script's runs/ (TensorBoard and checkpoint.pt), log.txt,
# command.txt, `started` (its flags) and, once it finished, a `done` marker.
set -euo pipefail
# Arrays that may be empty are expanded as ${array[@]+"${array[@]}"}: bash < 4.4 (still on some clusters) calls an
# empty "${array[@]}" unbound under `set -u`.

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python}

usage() {
    cat <<EOF
usage: ./benchmark.sh [options] [-- flags passed to every run]

Runs every (method x env x seed) combination of ppo_atari.py / sprig_ppo_atari.py, each in its own directory
OUT/PRESET/ENV/METHOD/seedSEED/ (runs/, log.txt, command.txt, and a 'done' marker once it exited 0), then
calls plot_results.py on OUT/PRESET (figure2.png, results.md). Rerunning skips finished runs and resumes
unfinished ones from their last checkpoint (from scratch if they have none, or were started with other flags);
concurrent invocations never run the same combination twice. How a run ended is its script's exit status: 0
finished (done), 3 stopped by a signal with its checkpoint (interrupted), 4 paused at --stop-at-step, other failed.

options:
  --methods "ppo sprig"     methods to run (default: ppo sprig), each in OUT/PRESET/ENV/METHOD/:
$(methods_help)
  --env-ids "IDS"           env ids (default: BeamRiderNoFrameskip-v4)
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
  --checkpoint-every N      each run writes its checkpoint.pt every N iterations, for resuming it if it is
                            killed (default: 25, about 26k steps; 0: never, killed runs restart from scratch).
                            A run stopped with Ctrl-C or kill writes one on its way out in any case
  --out DIR                 results directory (default: benchmark_results; benchmark_results_quick with --quick)
  --preset NAME             cleanrl: the scripts' defaults (CleanRL's ppo_atari, default)
                            paper:   the paper's Table 1 for both methods (docs/design.md, "The paper's
                                     setup (Table 1, Figure 2)"):
                                     ${PRESET_FLAGS_PAPER[*]}
  --quick                   CPU-sized check: seeds 1 2, 50000 steps, 2 workers (each unless given explicitly);
                            about an hour on 2 cores
  --dry-run                 print the run matrix (method env seed dir [state]) and the exact commands; run
                            nothing, create nothing (with --slurm: print the sbatch scripts instead of writing them).
                            It and a real run start with the cost: runs, env steps, and the wall time estimated
                            from the speed --sps measured (with the same --out and --preset) for --workers
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
EOF
}

die() { # a one-line error for a usage mistake, exit 2
    echo "error: $*" >&2
    exit 2
}

# ---------------------------------------------------------------------------------------------------------------
# Presets: flags added to every run. `paper` maps the paper's Table 1 (Martinez-Lopez, Chen & Lu, arXiv 2502.14264;
# docs/design.md, section "The paper's setup (Table 1, Figure 2)") to both methods equally:
# 8 envs x 256 steps = rollouts of 2048, 32 minibatches of 64, lr 1e-4, clip 0.2, episodes cut at 10000 steps.
# The remaining Table 1 values (4 epochs, gamma, GAE lambda, coefficients) are already the scripts' defaults.
# ---------------------------------------------------------------------------------------------------------------
PRESET_FLAGS_CLEANRL=()
PRESET_FLAGS_PAPER=(--num-envs 8 --num-steps 256 --num-minibatches 32 --learning-rate 1e-4 --clip-coef 0.2
    --max-episode-steps 10000)

# Game sets of --games, as NoFrameskip-v4 ids. atari5: the five games whose scores best predict the median
# human-normalised score over all 57 (Aitchison, Sweetser & Hutter, "Atari-5: Distilling the Arcade Learning
# Environment down to Five Games", 2022); atari3: the three games the same paper sets aside as a validation set,
# for tuning. plot_results.py normalises every one of them (its table holds all 57).
game_set() { # name -> its env ids; nothing for an unknown name
    case $1 in
    atari5) echo BattleZoneNoFrameskip-v4 DoubleDunkNoFrameskip-v4 NameThisGameNoFrameskip-v4 PhoenixNoFrameskip-v4 \
        QbertNoFrameskip-v4 ;;
    atari3) echo BattleZoneNoFrameskip-v4 NameThisGameNoFrameskip-v4 PhoenixNoFrameskip-v4 ;;
    esac
}

# The methods: one row each, the only place a method is defined. Its script; the flags that make it, besides the
# script's defaults (an --exp-name names its directory's curve: plot_results.py reads a run's method from its exp_name,
# the script's stem without one); its label and colour in plot_results.py's figures and tables; what it is, for --help.
# plot_results.py reads this table too (between the two END_OF_METHODS lines), so adding a method is one edit here;
# a second row for a script needs an --exp-name of its own, or plot_results.py could not tell its runs apart.
read -r -d '' METHODS_TABLE <<'END_OF_METHODS' || true # (read -d '' ends at the end of its input, with status 1)
# method       | script             | flags                                                | label                     | colour     | what it is
ppo            | ppo_atari.py       |                                                      | PPO                       | tab:blue   | CleanRL's PPO with the Nature CNN
sprig          | sprig_ppo_atari.py |                                                      | SPRIG                     | tab:orange | SPRIG, its default leader utility
sprig-pg       | sprig_ppo_atari.py | --leader-utility pg --exp-name sprig-pg              | SPRIG-pg                  | tab:red    | SPRIG with Algorithm 1's printed policy term as the leader's utility
sprig-implicit | sprig_ppo_atari.py | --leader-gradient implicit --exp-name sprig-implicit | SPRIG-implicit            | tab:purple | SPRIG whose leader follows its total derivative through the follower
sprig-joint    | sprig_ppo_atari.py | --update joint --exp-name sprig-joint                | PPO on SPRIG's network    | tab:green  | SPRIG's network trained as plain PPO: the control that tells the network's effect from the game's
sprig-cnn      | sprig_ppo_atari.py | --perception nature --exp-name sprig-cnn             | SPRIG's game on PPO's CNN | tab:brown  | SPRIG's two-stage game on ppo_atari.py's Nature CNN: the game without SPRIG's network
END_OF_METHODS
methods_awk() { # awk PROGRAM [awk options] run on the table's rows: cells split at '|' without their padding,
    # comments and blank lines skipped
    local program=$1
    shift
    awk -F' *[|] *' "$@" '{ sub(/^[ \t]+/, ""); sub(/[ \t]+$/, "") } /^#/ || NF == 0 { next } '"$program" <<<"$METHODS_TABLE"
}
bad_row=$(methods_awk 'NF != 6 || seen[$1]++ { print; exit }')
[[ -z $bad_row ]] || die "benchmark.sh's METHODS_TABLE: a row without 6 cells, or a method named twice: $bad_row"

method_field() { # method, column (2 script, 3 flags, 4 label, 6 what it is) -> that cell; nothing for an unknown method
    methods_awk '$1 == method { print $column }' -v method="$1" -v column="$2"
}
known_methods() { methods_awk '{ printf "%s%s", (n++ ? ", " : ""), $1 }'; }
script_of() { # method -> the training script; nothing for an unknown method
    local script
    script=$(method_field "$1" 2)
    [[ -z $script ]] || echo "$REPO_DIR/$script"
}
method_flags() { method_field "$1" 3; }
methods_help() { # --help's list: each method, its script and flags, what it is; wrapped under --methods' column
    methods_awk '{
        flags = $3; sub(/ *--exp-name [^ ]+/, "", flags)
        text = sprintf("%-14s %s%s: %s", $1, $2, flags == "" ? "" : " " flags, $6)
        while (length(text) > 88) {
            cut = 88; while (cut > 16 && substr(text, cut, 1) != " ") cut--
            if (cut <= 16) break # one word longer than the line: printed whole
            print "                            " substr(text, 1, cut - 1); text = "               " substr(text, cut + 1)
        }
        print "                            " text
    }'
}
method_label() { method_field "$1" 4; } # its name in plot_results.py's tables (and so in the speed table of --sps)

# ---------------------------------------------------------------------------------------------------------------
# Running one combination. These functions are also copied verbatim (declare -f) into the sbatch script, so they
# use only their arguments and the environment, never this script's globals.
# ---------------------------------------------------------------------------------------------------------------

# The lock is a directory (mkdir is atomic) holding `owner`: "host pid slurm_job process". A lock whose owner is
# dead (same host and pid gone or taken by another process since, or a Slurm job no longer in the queue) is stale and
# taken over. `process` (the boot and the pid's start time) tells a pid reused after a restart from the owner.
# slurm_job is the array task (ARRAYID_TASK) for a task of the sbatch script: a lock of this very task was left by
# an earlier start of it (killed before it released the lock, then requeued, maybe onto another node, where the
# owner's job is still in the queue: it is this one), and Slurm runs one start of a task at a time, so it is stale.
slurm_job() { # the Slurm job this runs in, as squeue and scontrol name it: ARRAYID_TASK in an array task; "-" outside
    if [[ -n ${SLURM_ARRAY_JOB_ID:-} && -n ${SLURM_ARRAY_TASK_ID:-} ]]; then
        echo "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
    else
        echo "${SLURM_JOB_ID:--}"
    fi
}

process_identity() { # pid -> "boot_id:start time", the same only for the same process of the same boot
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) } # the fields after the command name, which may hold spaces; the start time is the 20th
    read -r -a stat <<<"$stat"
    echo "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null):${stat[19]}"
}

lock_is_stale() { # lock_dir
    local host pid job process answer
    read -r host pid job process 2>/dev/null <"$1/owner" || return 1 # no owner yet: being created right now
    if [[ ${job:-} == *_* && $job == "$(slurm_job)" ]]; then
        return 0 # this array task's own lock, from an earlier start of it
    fi
    if [[ $host == "$(hostname)" ]]; then
        if ! kill -0 "$pid" 2>/dev/null || [[ -n ${process:-} && $(process_identity "$pid") != "$process" ]]; then
            return 0
        fi
    fi
    if [[ -n ${job:-} && $job != - ]] && command -v squeue >/dev/null; then
        # Gone from the queue: squeue answers nothing, or (once Slurm has purged the job) "Invalid job id". Any other
        # failure (the controller down, say) tells nothing, and the lock stays.
        if answer=$(squeue -h -j "$job" 2>&1); then
            [[ -z $answer ]] && return 0
        elif [[ $answer == *"Invalid job id"* ]]; then
            return 0
        fi
    fi
    return 1
}

acquire_lock() { # run_dir; fails if another live process holds the lock
    local lock=$1/.lock aside=$1/.lock.stale.$BASHPID stale_owner
    if ! mkdir "$lock" 2>/dev/null; then
        lock_is_stale "$lock" || return 1
        stale_owner=$(cat "$lock/owner" 2>/dev/null) || return 1
        # Take it over by renaming it aside, which only one of two competing invocations can do; if what we moved
        # is no longer the stale lock (someone took it over just before us), give it back.
        mv "$lock" "$aside" 2>/dev/null || return 1
        if [[ $(cat "$aside/owner" 2>/dev/null) != "$stale_owner" ]]; then
            mv "$aside" "$lock" 2>/dev/null || true
            return 1
        fi
        rm -rf "$aside"
        mkdir "$lock" 2>/dev/null || return 1
    fi
    echo "$(hostname) $BASHPID $(slurm_job) $(process_identity $BASHPID)" >"$lock/owner"
}

release_lock() { # run_dir
    rm -rf "$1/.lock"
}

latest_checkpoint() { # run_dir -> path of the newest runs/*/checkpoint.pt, if any
    local checkpoint
    checkpoint=$(ls -td "$1"/runs/*/checkpoint.pt 2>/dev/null | head -n 1) || true
    echo "$checkpoint"
}

resumable_checkpoint() { # run_dir signature -> its newest checkpoint, if the run there was started with SIGNATURE
    if [[ -e $1/started && $(<"$1/started") == "$2" ]]; then
        latest_checkpoint "$1"
    fi
    return 0 # nothing to resume is not an error (set -e)
}

clean_partial_run() { # run_dir: remove what a killed or failed run left (runs/, log.txt, ...), keep the lock
    find "$1" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
}

# run_state RUN_DIR SIGNATURE STOP: what a run there needs, in one word. new; done; conflict (done, with other flags);
# paused (paused by --stop-at-step at a step of at least STOP, "-" for none: nothing to do until STOP grows); resume (a
# checkpoint of a run started with SIGNATURE; a run started with other flags is restarted instead, as the script would
# refuse to resume it); clean (an unfinished run's output without a checkpoint, removed before it starts).
run_state() {
    if [[ -e $1/done ]]; then
        if [[ ! -s $1/done || $(<"$1/done") == "$2" ]]; then echo done; else echo conflict; fi
    elif [[ -n $(resumable_checkpoint "$1" "$2") ]]; then
        if [[ $3 != - && -s $1/paused ]] && (($(<"$1/paused") >= $3)); then echo paused; else echo resume; fi
    elif [[ -n $(ls -A "$1" 2>/dev/null | grep -vx '\.lock' || true) ]]; then
        echo clean
    else
        echo new
    fi
}

# run_one RUN_DIR THREADS SIGNATURE STOP COMMAND...: run COMMAND in RUN_DIR unless it is done, and tell how it ended
# by its exit status: 0 finished (marked done), 3 stopped by a signal after writing its checkpoint (interrupted:
# resumed next time), 4 paused at --stop-at-step with its checkpoint (paused), any other failed. SIGNATURE (script and
# flags) is stored in `done`, so a finished run is only skipped by a rerun asking for the same thing. A run killed
# earlier resumes from its checkpoint if it was started (file `started`) with the same SIGNATURE. STOP is COMMAND's
# --stop-at-step ("-" for none): a run paused there records STOP in `paused`, and is left as it is until STOP grows.
# COMMAND runs in the background and is waited for, its pid in RUN_PID: a caller's trap (the sbatch script's) runs
# while it does and stops it with SIGTERM; RUN_STOP set (by such a trap) before RUN_PID was: it is stopped, or not
# started. Sets RUN_STATUS to ran, skipped, paused, failed, interrupted, locked or conflict; returns 0 unless
# failed/conflict.
run_one() {
    local dir=$1 threads=$2 signature=$3 stop=$4 rc=0 start=$SECONDS checkpoint state resume_flags=()
    shift 4
    mkdir -p "$dir"
    state=$(run_state "$dir" "$signature" "$stop")
    if [[ $state != done && $state != conflict && $state != paused ]]; then
        if ! acquire_lock "$dir"; then
            RUN_STATUS=locked
            echo "$dir: locked by another live run ($(cat "$dir/.lock/owner" 2>/dev/null)); left to it" \
                "(if that run is dead, remove $dir/.lock: a lock written on another machine, or before this one's" \
            "hostname changed, is never taken for stale)"
            return 0
        fi
        state=$(run_state "$dir" "$signature" "$stop") # again under the lock: another invocation may have finished it
        [[ $state != done && $state != conflict && $state != paused ]] || release_lock "$dir"
    fi
    case $state in
    done)
        RUN_STATUS=skipped
        return 0
        ;;
    paused)
        RUN_STATUS=paused
        return 0
        ;;
    conflict)
        RUN_STATUS=conflict
        echo "error: $dir finished with other flags ($(<"$dir/done")); delete it or use another --out" >&2
        return 1
        ;;
    resume)
        checkpoint=$(latest_checkpoint "$dir")
        resume_flags=(--resume "$checkpoint")
        echo "$dir: resuming the unfinished earlier run from $checkpoint"
        ;;
    clean)
        echo "$dir: unfinished earlier run (no 'done' marker, no checkpoint): removing its partial output and restarting it"
        clean_partial_run "$dir"
        ;;
    esac
    if [[ -n ${RUN_STOP:-} ]]; then # asked to stop before it started: it does not start, and is resumed next time
        RUN_STATUS=interrupted
        release_lock "$dir"
        return 0
    fi
    rm -f "$dir/paused"
    echo "$signature" >"$dir/started"
    echo "$dir: started (log: $dir/log.txt)"
    local command=(env "OMP_NUM_THREADS=$threads" "MKL_NUM_THREADS=$threads" "$@" ${resume_flags[@]+"${resume_flags[@]}"})
    printf 'cd %q && %s\n' "$dir" "$(printf '%q ' "${command[@]}" | sed 's/ $//')" >"$dir/command.txt"
    (cd "$dir" && exec "${command[@]}") </dev/null >>"$dir/log.txt" 2>&1 &
    RUN_PID=$!
    [[ -z ${RUN_STOP:-} ]] || kill -TERM "$RUN_PID" 2>/dev/null || true # a stop that came before RUN_PID was set
    while wait "$RUN_PID"; jobs -rp | grep -qx "$RUN_PID"; do :; done # a trap ends a wait, not the run: wait again
    wait "$RUN_PID" || rc=$? # its exit status (bash gives it to every wait on it)
    RUN_PID=""
    case $rc in
    0)
        echo "$signature" >"$dir/done"
        RUN_STATUS=ran
        ;;
    3) RUN_STATUS=interrupted ;; # stopped by a signal after writing its checkpoint: not done, resumed next time
    4)
        RUN_STATUS=paused # at --stop-at-step, with its checkpoint: not done, goes on when asked for more steps
        [[ $stop == - ]] || echo "$stop" >"$dir/paused"
        ;;
    *)
        RUN_STATUS=failed
        echo "$dir: FAILED (exit $rc) after $((SECONDS - start)) s; see $dir/log.txt" >&2
        ;;
    esac
    release_lock "$dir"
    [[ $RUN_STATUS != failed ]]
}

# slurm_task RUN_DIR THREADS SIGNATURE STOP COMMAND...: one array task of the sbatch script, which is run_one under two
# traps. SIGUSR1 (Slurm's warning, --time-margin seconds before the time limit, to the batch shell only) and SIGTERM
# (scancel, a limit reached unwarned, preemption: Slurm sends it to every process of the job) stop the run as Ctrl-C
# does: SIGTERM to it, it finishes its iteration, writes its checkpoint and exits 3, and its lock is released. After
# the warning, a run that wrote a checkpoint since this start requeues the task, which starts again later, resuming
# from that checkpoint (run_one resumes a run started with the same SIGNATURE); a run that finished, failed, or wrote
# no checkpoint since this start (no progress) is not requeued. Slurm may requeue a task itself (PreemptMode=REQUEUE).
slurm_task() {
    local dir=$1 task before after
    task=$(slurm_job)
    RUN_PID="" RUN_STOP="" RUN_WARNED=0
    trap 'slurm_stop USR1' USR1
    trap 'slurm_stop TERM' TERM
    echo "$(date '+%F %T') task $task, start $((${SLURM_RESTART_COUNT:-0} + 1)), on $(hostname): $dir"
    before=$(checkpoint_stamp "$dir")
    run_one "$@" || true
    trap '' TERM # the run is over: a requeue's SIGTERM to this shell must not cut what follows
    after=$(checkpoint_stamp "$dir")
    echo "$(date '+%F %T') $dir: $RUN_STATUS"
    case $RUN_STATUS in
    ran | skipped | paused) return 0 ;;
    interrupted)
        if ((RUN_WARNED)) && [[ -n $after && $after != "$before" ]]; then
            echo "requeueing $task: it starts again, resuming from its checkpoint"
            scontrol requeue "$task" && return 0
            echo "error: scontrol requeue $task failed; the same benchmark.sh --slurm command resumes the run" >&2
        elif ((RUN_WARNED)); then
            echo "not requeued: the run wrote no checkpoint since this start (no progress); see $dir/log.txt" >&2
        else
            echo "stopped with its checkpoint; not requeued by this task (the same benchmark.sh --slurm command" \
                "resumes it)"
        fi
        return 3
        ;;
    failed)
        echo "not requeued: the run failed; see $dir/log.txt" >&2
        return 1
        ;;
    *) # locked or conflict: run_one said why
        echo "not requeued: the run is $RUN_STATUS" >&2
        return 1
        ;;
    esac
}

slurm_stop() { # SIGNAL: slurm_task's trap: stop the run (SIGTERM, once it is known); after USR1, ask for a requeue
    echo "$(date '+%F %T') SIG$1: stopping the run (its iteration finishes, then it writes its checkpoint)"
    [[ $1 != USR1 ]] || RUN_WARNED=1
    RUN_STOP=$1
    [[ -z $RUN_PID ]] || kill -TERM "$RUN_PID" 2>/dev/null || true
}

checkpoint_stamp() { # run_dir -> its newest checkpoint's path, time and size: it changes when the run checkpoints
    local checkpoint
    checkpoint=$(latest_checkpoint "$1")
    [[ -z $checkpoint ]] || stat -c '%n %y %s' "$checkpoint" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------------------------
METHODS="ppo sprig"
ENV_IDS="BeamRiderNoFrameskip-v4"
ENV_IDS_GIVEN=0
GAMES=""
SEEDS=""
TOTAL_TIMESTEPS=""
STOP_AT_STEP=""
WORKERS=""
OUT=""
PRESET=cleanrl
QUICK=0
DRY_RUN=0
PLOT=1
SLURM=0
SPS_MODE=0
SPS_ITERATIONS=4
CHECKPOINT_EVERY=25
PARTITION=""
TIME_LIMIT=24:00:00
TIME_MARGIN=300
GPUS=1
CPUS_PER_TASK=4
EXTRA_FLAGS=()
SWEEP_SPECS=() # each "FLAG=VALUE VALUE ..."

while (($# > 0)); do
    option=$1
    if [[ $option == --*=* ]]; then # --option=value is the same as --option value
        set -- "${option%%=*}" "${option#*=}" "${@:2}"
        option=$1
    fi
    case $option in
    -h | --help)
        usage
        exit 0
        ;;
    --methods | --env-ids | --games | --seeds | --total-timesteps | --workers | --out | --preset | --partition | \
        --time | --time-margin | --gpus | --cpus-per-task | --sweep | --checkpoint-every | --sps-iterations | \
        --stop-at-step)
        (($# >= 2)) || die "$option needs a value (see --help)"
        case $option in
        --methods) METHODS=$2 ;;
        --env-ids) ENV_IDS=$2 ENV_IDS_GIVEN=1 ;;
        --games) GAMES=$2 ;;
        --seeds) SEEDS=$2 ;;
        --total-timesteps) TOTAL_TIMESTEPS=$2 ;;
        --stop-at-step) STOP_AT_STEP=$2 ;;
        --workers) WORKERS=$2 ;;
        --out) OUT=$2 ;;
        --preset) PRESET=$2 ;;
        --partition) PARTITION=$2 ;;
        --time) TIME_LIMIT=$2 ;;
        --time-margin) TIME_MARGIN=$2 ;;
        --gpus) GPUS=$2 ;;
        --cpus-per-task) CPUS_PER_TASK=$2 ;;
        --sweep) SWEEP_SPECS+=("$2") ;;
        --checkpoint-every) CHECKPOINT_EVERY=$2 ;;
        --sps-iterations) SPS_ITERATIONS=$2 ;;
        esac
        shift 2
        ;;
    --quick) QUICK=1 && shift ;;
    --dry-run) DRY_RUN=1 && shift ;;
    --no-plot) PLOT=0 && shift ;;
    --slurm) SLURM=1 && shift ;;
    --sps) SPS_MODE=1 && shift ;;
    --)
        shift
        EXTRA_FLAGS=("$@")
        break
        ;;
    *) die "unknown option '$option' (see --help)" ;;
    esac
done

# --quick only fills in what was not given explicitly.
if ((QUICK)); then
    SEEDS=${SEEDS:-"1 2"}
    TOTAL_TIMESTEPS=${TOTAL_TIMESTEPS:-50000}
    WORKERS=${WORKERS:-2}
    OUT=${OUT:-benchmark_results_quick} # so that 50k-step runs never stand in for the full ones
fi
SEEDS=${SEEDS:-"1 2 3 4 5"}
TOTAL_TIMESTEPS=${TOTAL_TIMESTEPS:-10000000}
WORKERS=${WORKERS:-1}
OUT=${OUT:-benchmark_results}

if [[ -n $GAMES ]]; then
    ((ENV_IDS_GIVEN == 0)) || die "--games and --env-ids do not go together: --games $GAMES names the env ids"
    ENV_IDS=$(game_set "$GAMES")
    [[ -n $ENV_IDS ]] || die "unknown game set '$GAMES' (known: atari5, atari3)"
fi

is_count() { [[ $1 =~ ^[0-9]+$ ]] && (($1 > 0)); }
read -r -a METHOD_LIST <<<"$METHODS"
read -r -a ENV_LIST <<<"$ENV_IDS"
read -r -a SEED_LIST <<<"$SEEDS"
((${#METHOD_LIST[@]} > 0)) || die "--methods is empty"
for method in "${METHOD_LIST[@]}"; do
    [[ -n $(script_of "$method") ]] || die "unknown method '$method' (known: $(known_methods))"
done
((${#ENV_LIST[@]} > 0)) || die "--env-ids is empty"
for env_id in "${ENV_LIST[@]}"; do # the id shapes ale-py registers; the scripts check the rest (a typo, say) themselves
    [[ $env_id =~ ^ALE/[A-Za-z]+-v5$ || $env_id =~ ^[A-Z][A-Za-z]*(NoFrameskip|Deterministic)?-v[04]$ ]] ||
        die "--env-ids: '$env_id' is not an Atari game id (GameNoFrameskip-v4 or ALE/Game-v5, e.g. ALE/BeamRider-v5)"
done
((${#SEED_LIST[@]} > 0)) || die "--seeds is empty"
for seed in "${SEED_LIST[@]}"; do
    [[ $seed =~ ^[0-9]+$ ]] || die "seed '$seed' is not a non-negative integer"
done
case $PRESET in
cleanrl) PRESET_FLAGS=(${PRESET_FLAGS_CLEANRL[@]+"${PRESET_FLAGS_CLEANRL[@]}"}) ;;
paper) PRESET_FLAGS=("${PRESET_FLAGS_PAPER[@]}") ;;
*) die "unknown preset '$PRESET' (known: cleanrl, paper)" ;;
esac
is_count "$TOTAL_TIMESTEPS" || die "--total-timesteps must be a positive integer, got '$TOTAL_TIMESTEPS'"
[[ -z $STOP_AT_STEP ]] || is_count "$STOP_AT_STEP" || die "--stop-at-step must be a positive integer, got '$STOP_AT_STEP'"
[[ $CHECKPOINT_EVERY =~ ^[0-9]+$ ]] || die "--checkpoint-every must be a non-negative integer, got '$CHECKPOINT_EVERY'"
is_count "$WORKERS" || die "--workers must be a positive integer, got '$WORKERS'"
[[ $GPUS =~ ^[0-9]+$ ]] || die "--gpus must be a non-negative integer, got '$GPUS'"
is_count "$CPUS_PER_TASK" || die "--cpus-per-task must be a positive integer, got '$CPUS_PER_TASK'"
slurm_seconds() { # a Slurm time limit (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) -> seconds, 0 for none; nothing if not one
    local days=0 hours=0 minutes=0 seconds=0
    if [[ $1 =~ ^(INFINITE|UNLIMITED|infinite|unlimited)$ ]]; then
        echo 0
        return 0
    elif [[ $1 =~ ^([0-9]+)-([0-9]+)(:([0-9]+)(:([0-9]+))?)?$ ]]; then
        days=${BASH_REMATCH[1]} hours=${BASH_REMATCH[2]} minutes=${BASH_REMATCH[4]:-0} seconds=${BASH_REMATCH[6]:-0}
    elif [[ $1 =~ ^([0-9]+):([0-9]+):([0-9]+)$ ]]; then
        hours=${BASH_REMATCH[1]} minutes=${BASH_REMATCH[2]} seconds=${BASH_REMATCH[3]}
    elif [[ $1 =~ ^([0-9]+)(:([0-9]+))?$ ]]; then
        minutes=${BASH_REMATCH[1]} seconds=${BASH_REMATCH[3]:-0}
    else
        return 0
    fi
    echo $((((10#$days * 24 + 10#$hours) * 60 + 10#$minutes) * 60 + 10#$seconds))
}
TIME_SECONDS=$(slurm_seconds "$TIME_LIMIT")
[[ -n $TIME_SECONDS ]] ||
    die "--time: '$TIME_LIMIT' is not a Slurm time limit (MINUTES, H:MM:SS, DAYS-HH:MM:SS, DAYS-HH, ...)"
[[ $TIME_MARGIN =~ ^[0-9]+$ ]] && ((10#$TIME_MARGIN <= 65535)) ||
    die "--time-margin must be a whole number of seconds from 0 to 65535, got '$TIME_MARGIN'"
TIME_MARGIN=$((10#$TIME_MARGIN))
((TIME_SECONDS == 0 || TIME_MARGIN < TIME_SECONDS)) ||
    die "--time-margin $TIME_MARGIN is not shorter than --time $TIME_LIMIT ($TIME_SECONDS s): no time would be left to train"
PLOT_TIME_LIMIT=0:30:00 # the plot job's, unless --time is shorter (a partition's limit may forbid longer)
if ((TIME_SECONDS > 0 && TIME_SECONDS < 1800)); then
    PLOT_TIME_LIMIT=$TIME_LIMIT
fi

# ---------------------------------------------------------------------------------------------------------------
# Sweeps: each --sweep "FLAG=V1 V2 ..." varies one flag of sprig_ppo_atari.py, the others at their defaults. A swept
# run is named sprig_FLAG=VALUE (its directory and its --exp-name), which plot_results.py reads back as FLAG and
# VALUE. SWEEP_FLAGS and SWEEP_VALUES hold one entry per (flag, value).
# ---------------------------------------------------------------------------------------------------------------
SWEEP_FLAGS=()
SWEEP_VALUES=()
SWEEP_SUMMARY="" # "alpha-coop: 0.0 0.3 0.7 1.0; ..." for the dry run
number_pattern='^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$'
for spec in ${SWEEP_SPECS[@]+"${SWEEP_SPECS[@]}"}; do
    [[ $spec == *=* ]] || die "--sweep needs FLAG=VALUE [VALUE ...], e.g. --sweep \"alpha-coop=0.0 0.3 0.7 1.0\"; got '$spec'"
    flag=${spec%%=*}
    read -r -a values <<<"${spec#*=}"
    [[ $flag =~ ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ ]] ||
        die "--sweep: '$flag' is not a flag name (a flag of sprig_ppo_atari.py without its dashes, e.g. alpha-coop)"
    case $flag in
    env-id | seed | total-timesteps | exp-name) die "--sweep: --$flag is set by benchmark.sh itself and cannot be swept" ;;
    esac
    for word in ${PRESET_FLAGS[@]+"${PRESET_FLAGS[@]}"} ${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"}; do
        [[ $word == "--$flag" || $word == "--$flag="* || $word == --exp-name || $word == --exp-name=* ]] &&
            die "--sweep $flag: $word is also given by the preset or after --; a swept run sets --$flag and --exp-name itself"
    done
    ((${#values[@]} > 0)) || die "--sweep $flag: no values (e.g. --sweep \"$flag=0.1 0.2\")"
    for value in "${values[@]}"; do
        [[ $value =~ $number_pattern ]] || die "--sweep $flag: '$value' is not a number"
        # 0.3 and .30 would be two runs of the same value: compare the numbers, not the spellings.
        for ((i = 0; i < ${#SWEEP_FLAGS[@]}; i++)); do
            [[ ${SWEEP_FLAGS[i]} == "$flag" && $(LC_ALL=C printf '%g' "${SWEEP_VALUES[i]}") == $(LC_ALL=C printf '%g' "$value") ]] &&
                die "--sweep $flag: the value $value is listed twice"
        done
        SWEEP_FLAGS+=("$flag")
        SWEEP_VALUES+=("$value")
    done
    SWEEP_SUMMARY+="${SWEEP_SUMMARY:+; }$flag: ${values[*]}"
done
NUM_SWEPT=${#SWEEP_FLAGS[@]}
if ((NUM_SWEPT > 0)); then
    [[ " ${METHOD_LIST[*]} " == *" sprig "* ]] || die "--sweep runs only sprig, and --methods '$METHODS' leaves it out"
    ((SPS_MODE == 0)) || die "--sweep and --sps do not go together (measure speed without --sweep)"
    METHOD_LIST=(sprig)
fi

# What each (env, seed) runs: one variant per method, or one per swept (flag, value), all of them sprig.
VARIANT_METHODS=()
VARIANT_NAMES=() # the method's directory name, and the label in the run matrix
VARIANT_FLAGS=() # flags added to that variant's runs, space-separated (validated above: no spaces inside)
if ((NUM_SWEPT > 0)); then
    for ((i = 0; i < NUM_SWEPT; i++)); do
        VARIANT_METHODS+=(sprig)
        VARIANT_NAMES+=("sprig_${SWEEP_FLAGS[i]}=${SWEEP_VALUES[i]}")
        VARIANT_FLAGS+=("--${SWEEP_FLAGS[i]} ${SWEEP_VALUES[i]} --exp-name sprig_${SWEEP_FLAGS[i]}=${SWEEP_VALUES[i]}")
    done
else
    for method in "${METHOD_LIST[@]}"; do
        VARIANT_METHODS+=("$method")
        VARIANT_NAMES+=("$method")
        VARIANT_FLAGS+=("$(method_flags "$method")")
    done
fi

case $OUT in
/*) ;;
*) OUT=$PWD/${OUT#./} ;; # runs start in their own directories, so every path is absolute
esac
RESULTS_DIR=$OUT/$PRESET

# ---------------------------------------------------------------------------------------------------------------
# The run matrix, seed-major so that a benchmark stopped halfway has every method at the same number of seeds.
# ---------------------------------------------------------------------------------------------------------------
RUN_LABELS=() # "method env seed", method being sprig_FLAG=VALUE in a sweep
RUN_METHODS=() # a method of METHODS_TABLE: what the run costs
RUN_DIRS=()
RUN_COMMANDS=() # each a %q-quoted command line, without the thread variables
RUN_SIGNATURES=()
# How often a run saves itself and where it pauses do not change its results: they stay out of its signature.
CHECKPOINT_FLAGS=(--checkpoint-every "$CHECKPOINT_EVERY")
[[ -z $STOP_AT_STEP ]] || CHECKPOINT_FLAGS+=(--stop-at-step "$STOP_AT_STEP")
STOP=${STOP_AT_STEP:--} # run_one's and run_state's STOP
for seed in "${SEED_LIST[@]}"; do
    for env_id in "${ENV_LIST[@]}"; do
        for ((variant = 0; variant < ${#VARIANT_NAMES[@]}; variant++)); do
            method=${VARIANT_METHODS[variant]}
            read -r -a variant_flags <<<"${VARIANT_FLAGS[variant]}"
            flags=(--env-id "$env_id" --seed "$seed" --total-timesteps "$TOTAL_TIMESTEPS")
            flags+=(${variant_flags[@]+"${variant_flags[@]}"})
            flags+=(${PRESET_FLAGS[@]+"${PRESET_FLAGS[@]}"})
            if ((SLURM && GPUS == 0)); then
                flags+=(--no-cuda)
            fi
            script=$(script_of "$method")
            RUN_LABELS+=("${VARIANT_NAMES[variant]} $env_id $seed")
            RUN_METHODS+=("$method")
            RUN_DIRS+=("$RESULTS_DIR/$env_id/${VARIANT_NAMES[variant]}/seed$seed")
            signature_flags=("${flags[@]}" ${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"})
            RUN_SIGNATURES+=("$(basename "$script") ${signature_flags[*]}")
            flags+=(${CHECKPOINT_FLAGS[@]+"${CHECKPOINT_FLAGS[@]}"} ${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"})
            RUN_COMMANDS+=("$(printf '%q ' "$PYTHON" "$script" "${flags[@]}" | sed 's/ $//')")
        done
    done
done
NUM_RUNS=${#RUN_DIRS[@]}
if (($(printf '%s\n' "${RUN_DIRS[@]}" | sort | uniq -d | wc -l) > 0)); then
    die "a method, env id or seed is listed twice: $(printf '%s\n' "${RUN_DIRS[@]}" | sort | uniq -d | head -n 1)"
fi
WORKER_PIDS=()

# The plots at the end (%q-quoted command lines), and what each makes: plot_results.py on the results, and after a
# sweep its trade-off command.
PLOT_COMMANDS=("$(printf '%q ' "$PYTHON" "$REPO_DIR/plot_results.py" "$RESULTS_DIR" | sed 's/ $//')")
PLOT_OUTPUTS=("figure: $RESULTS_DIR/figure2.png, table: $RESULTS_DIR/results.md")
if ((NUM_SWEPT > 0)); then
    PLOT_COMMANDS+=("$(printf '%q ' "$PYTHON" "$REPO_DIR/plot_results.py" tradeoff "$RESULTS_DIR" | sed 's/ $//')")
    PLOT_OUTPUTS+=("trade-off: $RESULTS_DIR/tradeoff_FLAG.png and .md for each swept flag")
fi

NUM_CORES=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
THREADS=$((NUM_CORES / WORKERS))
((THREADS >= 1)) || THREADS=1

check_scripts_exist() {
    local method script
    for method in "${METHOD_LIST[@]}"; do
        script=$(script_of "$method")
        [[ -f $script ]] || die "$method needs $script, which does not exist (yet); use --methods to leave it out"
    done
}

# ---------------------------------------------------------------------------------------------------------------
# The cost of the run matrix, before it starts: runs, env steps, and the wall time at the speed --sps measured. --sps
# writes OUT/sps/DATE/sps.md (one row per method: SPS of one run alone on the machine, all cores to it, the preset's
# batch) and `measured_with` beside it (the preset, the flags after --, the machine's load average when it started);
# the newest one of this --preset is used.
# ---------------------------------------------------------------------------------------------------------------
speed_table() { # the newest OUT/sps/DATE/sps.md measured with this preset, or nothing
    local table
    while read -r table; do
        if [[ $(head -n 1 "$(dirname "$table")/measured_with" 2>/dev/null) == "preset $PRESET" ]]; then
            echo "$table"
            return 0
        fi
    done < <(ls -1 "$OUT"/sps/*/sps.md 2>/dev/null | sort -r) # DATE is YYYYmmdd-HHMMSS: newest first
    return 0
}

thousands() { # 40960 -> 40,960
    local number=$1 grouped=""
    while ((${#number} > 3)); do
        grouped=",${number: -3}$grouped"
        number=${number:0:${#number}-3}
    done
    echo "$number$grouped"
}

print_cost() { # the matrix's runs and env steps, and its estimated wall time for WORKERS workers
    local table method count sps seconds=0 speeds="" unmeasured="" measured
    local steps=$TOTAL_TIMESTEPS paused="" # with --stop-at-step, what this command trains is each run up to its pause
    if [[ -n $STOP_AT_STEP ]] && ((STOP_AT_STEP < TOTAL_TIMESTEPS)); then
        steps=$STOP_AT_STEP paused=" (up to --stop-at-step, of $(thousands "$TOTAL_TIMESTEPS") each)"
    fi
    echo "cost: $NUM_RUNS runs x $(thousands "$steps") steps = $(thousands $((NUM_RUNS * steps))) env steps$paused"
    table=$(speed_table)
    if [[ -z $table ]]; then
        echo "wall time: unknown, no speed measured with --preset $PRESET in $OUT/sps; measure it (a few minutes) with" \
            "./benchmark.sh --sps --preset $PRESET --out $OUT, adding after -- the flags the runs get"
        return 0
    fi
    for method in "${METHOD_LIST[@]}"; do
        count=$(printf '%s\n' "${RUN_METHODS[@]}" | grep -cx -- "$method" || true)
        # the SPS column found by its header, so a reordered table is still read right
        sps=$(awk -F' *[|] *' -v method="$(method_label "$method")" \
            'column == 0 { for (i = 1; i <= NF; i++) if ($i == "SPS") column = i; next } $2 == method { print $column; exit }' \
            "$table")
        if [[ -z $sps ]] || ! awk -v sps="$sps" 'BEGIN { exit !(sps + 0 > 0) }'; then
            unmeasured+="${unmeasured:+, }$method ($count runs)"
            continue
        fi
        speeds+="${speeds:+, }$(method_label "$method") $sps SPS"
        seconds=$(awk -v total="$seconds" -v runs="$count" -v steps="$steps" -v sps="$sps" \
            'BEGIN { print total + runs * steps / sps }')
    done
    if [[ -z $speeds ]]; then
        echo "wall time: unknown, $table holds no speed of $unmeasured; measure it with --sps and --methods"
        return 0
    fi
    # One run at a time, each at its measured speed; WORKERS runs side by side take between that over WORKERS (each
    # keeps its speed: a run that leaves cores idle) and all of it (they share the machine's speed: runs that each
    # keep every core busy, as on a CPU with a few cores). Start-up, evaluation and checkpoints are not counted.
    measured=$(sed -n 2p "$(dirname "$table")/measured_with")
    measured+=$(sed -n 3p "$(dirname "$table")/measured_with" | sed 's/^./; &/') # older tables have no load line
    awk -v seconds="$seconds" -v workers="$WORKERS" -v speeds="$speeds" -v measured="$measured" -v table="$table" \
        'function hms(s) {
            s = int(s + 0.5)
            return sprintf("%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) (s >= 172800 ? sprintf(" (%.1f days)", s / 86400) : "")
        }
        BEGIN {
            print "wall time: about " hms(seconds) " one run at a time, at the speeds measured in " table " (" speeds \
                "; flags after -- then: " (measured ~ /^;|^$/ ? "none" : "") measured ")"
            if (workers > 1)
                print "with " workers " workers: between " hms(seconds / workers) " (if each run keeps that speed beside" \
                    " the others) and " hms(seconds) " (if they share it, as runs that keep every core busy do);" \
                    " start-up and evaluation not counted"
        }'
    if [[ -n $unmeasured ]]; then
        echo "wall time leaves out $unmeasured: no speed measured in $table"
    fi
}

# ---------------------------------------------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------------------------------------------
print_dry_run() {
    local i state variants="${#METHOD_LIST[@]} methods"
    if ((NUM_SWEPT > 0)); then
        variants="sprig at $NUM_SWEPT swept values ($SWEEP_SUMMARY)"
    fi
    echo "# $NUM_RUNS runs = $variants x ${#ENV_LIST[@]} envs x ${#SEED_LIST[@]} seeds," \
        "preset $PRESET, $TOTAL_TIMESTEPS steps each, $WORKERS workers x $THREADS threads ($NUM_CORES cores)"
    print_cost | sed 's/^/# /'
    for method in "${METHOD_LIST[@]}"; do
        [[ -f $(script_of "$method") ]] || echo "# warning: $(script_of "$method") does not exist (yet)"
    done
    echo "# method env seed dir [state]"
    for ((i = 0; i < NUM_RUNS; i++)); do
        case $(run_state "${RUN_DIRS[i]}" "${RUN_SIGNATURES[i]}" "$STOP") in
        new) state="[new]" ;;
        done) state="[done: skip]" ;;
        paused) state="[paused at --stop-at-step $(<"${RUN_DIRS[i]}/paused"): skip, until --stop-at-step grows]" ;;
        conflict) state="[done with other flags: conflict]" ;;
        resume) state="[unfinished: resume from its checkpoint]" ;;
        clean) state="[unfinished: clean and rerun]" ;;
        esac
        echo "${RUN_LABELS[i]} ${RUN_DIRS[i]} $state"
    done
    echo "# commands (each run from its dir, stdout+stderr to log.txt there):"
    for ((i = 0; i < NUM_RUNS; i++)); do
        echo "cd $(printf '%q' "${RUN_DIRS[i]}") && OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS ${RUN_COMMANDS[i]}"
    done
    if ((PLOT)); then
        printf '%s\n' "${PLOT_COMMANDS[@]}"
    fi
}

slurm_script() { # the sbatch job array, on stdout
    local i
    echo "#!/bin/bash"
    echo "# SPRIG benchmark: $NUM_RUNS runs (preset $PRESET), one array task each. Written by benchmark.sh --slurm, which"
    echo "# submits it, then $OUT/sprig_benchmark_plot.sbatch with --dependency=afterany:ARRAYID (the array's job id)."
    echo "#SBATCH --job-name=sprig-benchmark"
    echo "#SBATCH --array=0-$((NUM_RUNS - 1))"
    echo "#SBATCH --time=$TIME_LIMIT"
    echo "#SBATCH --cpus-per-task=$CPUS_PER_TASK"
    if ((GPUS > 0)); then
        echo "#SBATCH --gpus=$GPUS"
    fi
    if [[ -n $PARTITION ]]; then
        echo "#SBATCH --partition=$PARTITION"
    fi
    echo "#SBATCH --output=$OUT/slurm-%A_%a.out"
    echo "#SBATCH --open-mode=append" # a requeued task goes on writing its output file
    echo "#SBATCH --requeue"
    if ((TIME_MARGIN > 0)); then # the warning: the task checkpoints its run and requeues itself (slurm_task)
        echo "#SBATCH --signal=B:USR1@$TIME_MARGIN"
    fi
    echo "set -euo pipefail"
    echo "# Load modules / activate the Python environment here if the job needs it."
    echo
    declare -f slurm_job process_identity lock_is_stale acquire_lock release_lock latest_checkpoint \
        resumable_checkpoint clean_partial_run run_state run_one slurm_task slurm_stop checkpoint_stamp
    echo
    echo "case \${SLURM_ARRAY_TASK_ID:?run this script with sbatch} in"
    for ((i = 0; i < NUM_RUNS; i++)); do
        echo "$i) # ${RUN_LABELS[i]}"
        echo "    dir=$(printf '%q' "${RUN_DIRS[i]}")"
        echo "    signature=$(printf '%q' "${RUN_SIGNATURES[i]}")"
        echo "    command=(${RUN_COMMANDS[i]}) ;;"
    done
    echo "*) echo \"no run for array task \$SLURM_ARRAY_TASK_ID\" >&2 && exit 1 ;;"
    echo "esac"
    echo "slurm_task \"\$dir\" \"\${SLURM_CPUS_PER_TASK:-$CPUS_PER_TASK}\" \"\$signature\" $STOP \"\${command[@]}\""
}

slurm_plot_script() { # the job that plots once every array task has ended, on stdout
    local i
    echo "#!/bin/bash"
    echo "# SPRIG benchmark: plot what the job array of $OUT/sprig_benchmark.sbatch finished, once all its tasks have"
    echo "# ended; name the runs not done. Written by benchmark.sh --slurm, which submits it with"
    echo "# --dependency=afterany:ARRAYID."
    echo "#SBATCH --job-name=sprig-benchmark-plot"
    echo "#SBATCH --time=$PLOT_TIME_LIMIT"
    echo "#SBATCH --cpus-per-task=1"
    if [[ -n $PARTITION ]]; then
        echo "#SBATCH --partition=$PARTITION"
    fi
    echo "#SBATCH --output=$OUT/slurm-plot-%j.out"
    echo "set -uo pipefail"
    echo "# Load modules / activate the Python environment here if the job needs it."
    echo
    declare -f latest_checkpoint resumable_checkpoint run_state
    echo
    echo "not_done=0 status=0"
    echo "report() { # label dir signature: say so unless the run there is done"
    echo "    local state"
    echo "    state=\$(run_state \"\$2\" \"\$3\" $STOP)"
    echo "    [[ \$state == done ]] && return 0"
    echo "    case \$state in"
    echo "    paused) state=\"paused at --stop-at-step \$(<\"\$2/paused\")\" ;;"
    echo "    resume) state=\"unfinished, checkpointed: the same benchmark.sh --slurm command resumes it\" ;;"
    echo "    conflict) state=\"done with other flags\" ;;"
    echo "    clean | new) state=\"unfinished, no checkpoint: it starts again\" ;;"
    echo "    esac"
    echo "    echo \"not done: \$1 (\$state); log: \$2/log.txt\""
    echo "    not_done=\$((not_done + 1))"
    echo "}"
    for ((i = 0; i < NUM_RUNS; i++)); do
        echo "report $(printf '%q' "${RUN_LABELS[i]}") $(printf '%q' "${RUN_DIRS[i]}") $(printf '%q' "${RUN_SIGNATURES[i]}")"
    done
    echo "echo \"\$(($NUM_RUNS - not_done)) of $NUM_RUNS runs done, \$not_done not done\""
    for ((i = 0; i < ${#PLOT_COMMANDS[@]}; i++)); do
        echo "${PLOT_COMMANDS[i]} && echo $(printf '%q' "${PLOT_OUTPUTS[i]}") || status=1"
    done
    echo "exit \$status"
}

write_slurm_script() { # write the sbatch scripts and submit them if sbatch is on PATH
    local path=$OUT/sprig_benchmark.sbatch plot_path=$OUT/sprig_benchmark_plot.sbatch array_id plot_id
    mkdir -p "$OUT"
    slurm_script >"$path"
    echo "wrote $path ($NUM_RUNS array tasks)"
    if ((PLOT)); then
        slurm_plot_script >"$plot_path"
        echo "wrote $plot_path (plots once every task has ended)"
    fi
    if ! command -v sbatch >/dev/null; then
        echo "sbatch is not on PATH; on the cluster, run this same command there, or submit with:"
        if ((PLOT)); then
            echo "  id=\$(sbatch --parsable $path) && sbatch --dependency=afterany:\${id%%;*} $plot_path"
        else
            echo "  sbatch $path"
        fi
        return 0
    fi
    array_id=$(sbatch --parsable "$path") || { echo "error: sbatch $path failed" >&2 && return 1; }
    array_id=${array_id%%;*} # --parsable prints "id" or "id;cluster"
    [[ $array_id =~ ^[0-9]+$ ]] || { echo "error: sbatch --parsable printed '$array_id', not a job id" >&2 && return 1; }
    echo "submitted the job array: job $array_id, $NUM_RUNS tasks; each task's output: $OUT/slurm-${array_id}_TASK.out"
    if ((PLOT)); then
        plot_id=$(sbatch --parsable --dependency="afterany:$array_id" "$plot_path") ||
            { echo "error: sbatch $plot_path failed; the array runs, but nothing will plot it" >&2 && return 1; }
        plot_id=${plot_id%%;*}
        echo "submitted the plot job: job $plot_id, once all tasks have ended ($RESULTS_DIR/results.md;" \
            "output: $OUT/slurm-plot-$plot_id.out)"
    fi
    echo "follow: squeue -j $array_id${plot_id:+,$plot_id}; tail $OUT/slurm-${array_id}_*.out; each run's log.txt"
}

# Each status run_one sets: the summary's counter it adds to, what the run's line says as it ends (after SECONDS s),
# and for a run that did not finish, a line for the end of the summary (stderr), where it cannot scroll away.
describe_status() { # status index seconds -> sets COUNTED_AS, PROGRESS and PROBLEM
    local label=${RUN_LABELS[$2]} dir=${RUN_DIRS[$2]}
    COUNTED_AS=failed
    PROBLEM=""
    case $1 in
    ran) COUNTED_AS=ran PROGRESS="finished in $3 s" ;;
    skipped) COUNTED_AS=skipped PROGRESS="already done, skipped" ;;
    paused)
        COUNTED_AS=paused
        PROGRESS="paused at --stop-at-step $(cat "$dir/paused" 2>/dev/null), checkpointed; not done:"
        PROGRESS+=" the same command with a larger --stop-at-step, or none, goes on"
        ;;
    locked) COUNTED_AS=locked PROGRESS="running in another invocation, left to it" ;;
    conflict)
        PROGRESS="NOT RUN: finished earlier with other flags"
        PROBLEM="NOT RUN: $label: $dir finished earlier with other flags"
        ;;
    interrupted)
        PROGRESS="interrupted after $3 s; checkpointed, a rerun resumes it"
        PROBLEM="INTERRUPTED: $label: checkpointed in $dir; run the same command again to resume"
        ;;
    *)
        PROGRESS="FAILED after $3 s"
        PROBLEM="FAILED: $label; log: $dir/log.txt"
        ;;
    esac
}

stop_workers() { # on Ctrl-C or kill: stop every worker's process group (the worker and its training run)
    echo "interrupted: stopping the runs" >&2
    kill -TERM -- ${WORKER_PIDS[@]+"${WORKER_PIDS[@]/#/-}"} 2>/dev/null || true
    exit 130
}

run_all() { # every combination, WORKERS at a time; then report and plot
    local i failed=0 locked=0 paused=0 ran=0 skipped=0 status
    STATUS_DIR=$(mktemp -d) # each worker writes its run's RUN_STATUS here
    trap 'rm -rf "$STATUS_DIR"' EXIT
    # Each worker in its own process group: Ctrl-C reaches only this script, whose trap then stops every worker
    # with its training run (background jobs of a script would otherwise ignore SIGINT and run on).
    set -m
    trap stop_workers INT TERM HUP
    echo "$NUM_RUNS runs, preset $PRESET, $TOTAL_TIMESTEPS steps each, $WORKERS workers x $THREADS threads," \
        "results in $RESULTS_DIR"
    print_cost
    for ((i = 0; i < NUM_RUNS; i++)); do
        while (($(jobs -rp | wc -l) >= WORKERS)); do
            wait -n 2>/dev/null || sleep 1 # bash < 4.3 has no `wait -n`
        done
        (
            RUN_STATUS=failed
            start=$SECONDS
            eval "command=(${RUN_COMMANDS[i]})"
            run_one "${RUN_DIRS[i]}" "$THREADS" "${RUN_SIGNATURES[i]}" "$STOP" "${command[@]}" || true
            echo "$RUN_STATUS" >"$STATUS_DIR/$i"
            describe_status "$RUN_STATUS" "$i" $((SECONDS - start))
            echo "[$((i + 1))/$NUM_RUNS] ${RUN_LABELS[i]}: $PROGRESS"
        ) &
        WORKER_PIDS+=($!)
    done
    wait || true
    echo
    for ((i = 0; i < NUM_RUNS; i++)); do
        describe_status "$(cat "$STATUS_DIR/$i" 2>/dev/null || echo failed)" "$i" 0
        : $(($COUNTED_AS += 1)) # the counter COUNTED_AS names: ran, skipped, paused, locked or failed
        [[ -z $PROBLEM ]] || echo "$PROBLEM" >&2
    done
    echo "summary: $ran ran, $skipped already done (skipped), $paused paused at --stop-at-step," \
        "$locked running elsewhere (locked), $failed failed"
    if ((PLOT)); then
        for ((i = 0; i < ${#PLOT_COMMANDS[@]}; i++)); do
            if eval "${PLOT_COMMANDS[i]}"; then
                echo "${PLOT_OUTPUTS[i]}"
            else
                echo "failed: ${PLOT_COMMANDS[i]}" >&2
                failed=$((failed + 1))
            fi
        done
    fi
    ((failed == 0))
}

measure_sps() { # each method in turn, alone on the machine, for SPS_ITERATIONS iterations; then the speed table
    local dir=$OUT/sps/$(date +%Y%m%d-%H%M%S) method flags method_flags num_envs=8 num_steps=128 i load
    # Other work on the machine slows the runs measured here (threads waiting for busy cores), and so lengthens every
    # wall time estimated from them: the load is recorded with the speeds, and a busy machine is said to be one.
    load=$(cut -d ' ' -f 1 /proc/loadavg 2>/dev/null || true)
    if [[ -n $load ]] && awk -v load="$load" -v cores="$NUM_CORES" 'BEGIN { exit !(load >= cores / 2) }'; then
        echo "warning: the machine is busy (load average $load on $NUM_CORES cores): the speeds measured now, and the" \
            "wall times estimated from them, come out slower than on an idle machine" >&2
    fi
    flags=(--env-id "${ENV_LIST[0]}" --seed "${SEED_LIST[0]}" ${PRESET_FLAGS[@]+"${PRESET_FLAGS[@]}"})
    flags+=(${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"})
    for ((i = 0; i < ${#flags[@]} - 1; i++)); do # the batch size the runs will use, so each does whole iterations
        [[ ${flags[i]} == --num-envs ]] && num_envs=${flags[i + 1]}
        [[ ${flags[i]} == --num-steps ]] && num_steps=${flags[i + 1]}
    done
    flags+=(--total-timesteps $((num_envs * num_steps * SPS_ITERATIONS)))
    for method in "${METHOD_LIST[@]}"; do
        mkdir -p "$dir/$method"
        read -r -a method_flags <<<"$(method_flags "$method")"
        echo "sps: $method, $SPS_ITERATIONS iterations (the first is warm-up), $NUM_CORES threads, log in $dir/$method/log.txt"
        (cd "$dir/$method" && OMP_NUM_THREADS=$NUM_CORES MKL_NUM_THREADS=$NUM_CORES \
            "$PYTHON" "$(script_of "$method")" ${method_flags[@]+"${method_flags[@]}"} "${flags[@]}" >log.txt 2>&1) ||
            die "$method failed; see $dir/$method/log.txt"
    done
    "$PYTHON" "$REPO_DIR/plot_results.py" sps "$dir"
    # What the cost estimate of a later run reads back: the preset, the flags after --, the load before measuring.
    printf 'preset %s\n%s\n%s\n' "$PRESET" "${EXTRA_FLAGS[*]+${EXTRA_FLAGS[*]}}" \
        "load average ${load:-unknown} on $NUM_CORES cores when measured" >"$dir/measured_with"
}

if ((SPS_MODE)); then
    is_count "$SPS_ITERATIONS" && ((SPS_ITERATIONS >= 2)) || die "--sps-iterations must be at least 2, got '$SPS_ITERATIONS'"
    check_scripts_exist
    measure_sps
elif ((DRY_RUN && SLURM)); then
    slurm_script
    if ((PLOT)); then
        echo
        echo "# ---- $OUT/sprig_benchmark_plot.sbatch, submitted with --dependency=afterany:ARRAYID ----"
        slurm_plot_script
    fi
elif ((DRY_RUN)); then
    print_dry_run
elif ((SLURM)); then
    check_scripts_exist
    write_slurm_script
else
    check_scripts_exist
    run_all
fi
