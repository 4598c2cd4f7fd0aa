"""Learning curves and results tables from the TensorBoard logs of ppo_atari.py / sprig_ppo_atari.py runs.

Reproduces the layout of Figure 2 of the SPRIG paper (mean episodic return against environment steps, one panel per
game, mean ± std over seeds) and summarises every (env, method) group in a table: each seed's final score (the mean of
its last 100 episodic returns), their mean ± std, and their interquartile mean (IQM) with its 95% confidence interval,
raw and human-normalised (every game of Atari-57; a game outside it is reported raw).

Across games and seeds, after Agarwal et al., "Deep Reinforcement Learning at the Edge of the Statistical Precipice"
(NeurIPS 2021), with their library rliable: each method's human-normalised IQM, median, mean and optimality gap, and
P(method > PPO), each with a 95% stratified-bootstrap confidence interval (seeds resampled within each game,
percentile method), and its performance profile. With a handful of seeds, a mean ± std says little about how sure a
comparison is.

Run:
    python plot_results.py benchmark_results/cleanrl
    python plot_results.py runs --paper-reference --out-dir figures
    python plot_results.py runs --band iqm      # curves: IQM over seeds and its 95% CI instead of mean ± std
    python plot_results.py --help
Writes into --out-dir (default: the directory given):
    figure2.png, figure2.pdf   the learning curves, one panel per game
    aggregate.png              the aggregate statistics with their CIs (if a game has reference scores)
    performance_profile.png    per method, the fraction of runs above each human-normalised score, with CI bands
    results.md, results.csv    one row per (env, method); results.md ends with the aggregate table
    results_aggregate.csv      one row per method: the aggregate statistics and their CIs
Other commands (python plot_results.py COMMAND --help): sps, attention, tradeoff, compact. The file reads top to bottom: reading
runs (every command), then one section per command.
"""

import csv
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
import tyro

from methods import METHODS, methods_table_mistake  # the methods table: a method is one row there

LAST_EPISODES = 100
"""final score of a seed = mean of its last 100 episodic returns; the curves use the same trailing window"""

if (mistake := methods_table_mistake()) is not None:  # two rows that would draw two methods as one
    raise SystemExit(f"error: {mistake}")
METHOD_NAMES = {method.exp_name: method.label for method in METHODS}
"""exp_name -> the method shown in plots and tables (benchmark.py reads --sps speeds back from sps.csv by the same label)"""
METHOD_COLORS = {method.label: method.colour for method in METHODS}
"""label -> its colour, the same in every figure"""

COLLAPSED_ENTROPY = 0.05
"""a seed whose losses/entropy ever fell below this has a collapsed policy: below 0.05 nats a policy plays one action
about 99% of the time (uniform over BeamRider's 9 actions is 2.20) and no longer explores. It stays flagged if the
entropy later rises again: what it learned next came from a near-deterministic policy (SPRIG-pg seed 1 fell to 0.001
at 29k steps, then crept back to 0.14 scoring about a third of random play); PPO's seeds stay above 1"""


# ---------------------------------------------------------------------------------------------------------------
# Reading runs, for every command. A run is a directory of TensorBoard event files, named by the training scripts
# {env_id}__{exp_name}__{seed}__{unix_time}: the env id, method and seed are read from that name.
# ---------------------------------------------------------------------------------------------------------------
SWEEP_EXP_NAME = re.compile(
    r"sprig_(?P<flag>[a-z][a-z0-9]*(?:-[a-z0-9]+)*)=(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
)
"""the exp_name benchmark.sh --sweep gives a swept run: sprig_FLAG=VALUE, e.g. sprig_alpha-coop=0.3 (no "__" inside,
so run names still split unambiguously)"""


def parse_sweep(exp_name: str) -> tuple[str, str] | None:
    """(flag, value as written) from a swept run's exp_name `sprig_FLAG=VALUE`, or None for any other exp_name."""
    match = SWEEP_EXP_NAME.fullmatch(exp_name)
    return (match["flag"], match["value"]) if match else None


def method_name(exp_name: str) -> str:
    """The method shown in plots and tables: PPO, SPRIG, `SPRIG alpha-coop=0.3` for a swept run, else exp_name."""
    swept = parse_sweep(exp_name)
    if swept is not None:
        return f"SPRIG {swept[0]}={swept[1]}"
    return METHOD_NAMES.get(exp_name, exp_name)


def parse_run_name(name: str) -> tuple[str, str, int, int] | None:
    """(env_id, method, seed, unix_time) from `{env_id}__{exp_name}__{seed}__{unix_time}`, or None if it is not one."""
    parts = name.split("__")
    if len(parts) < 4 or not re.fullmatch(r"-?\d+", parts[-2]) or not parts[-1].isdigit():
        return None
    exp_name = "__".join(parts[1:-2])
    return parts[0], method_name(exp_name), int(parts[-2]), int(parts[-1])


def find_run_dirs(directory: str) -> list[str]:
    """Every directory under `directory` (itself included) that directly holds a TensorBoard event file."""
    return sorted(
        root for root, _, files in os.walk(directory) if any(name.startswith("events.out.tfevents.") for name in files)
    )


def drop_rewound_points(steps: np.ndarray, values: np.ndarray, wall_times: np.ndarray, files: np.ndarray | None = None):
    """The points in wall-time order, without those that a restarted run superseded.

    A run resumed from a checkpoint logs its steps again from the checkpoint on, into a new event file; the points the
    killed run had logged beyond that step are superseded, as TensorBoard's own purge would treat them. So a point
    drops the points logged before it at a larger step and, when `files` (each point's event file) says they come from
    another file, at the same step too. Equal steps within one file are all kept: several episodes can end at the
    same global step.
    """
    order = np.argsort(wall_times, kind="stable")
    kept: list[int] = []
    for index in order:
        while kept and (
            steps[kept[-1]] > steps[index]
            or (files is not None and steps[kept[-1]] == steps[index] and files[kept[-1]] != files[index])
        ):
            kept.pop()
        kept.append(index)
    return steps[kept], values[kept], wall_times[kept]


def read_scalars(path: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every scalar point of the event files directly in `path` (all of them, no sample), per tag: (steps, values,
    wall times) in wall-time order, without the points that a resumed run superseded (see drop_rewound_points)."""
    from tbparse import SummaryReader

    # tbparse also reads the event files of subdirectories; those are runs of their own (find_run_dirs), so only the
    # rows of the directory itself (dir_name "") are kept, as TensorBoard's EventAccumulator read them. file_name tells
    # a resumed run's points (a new event file) from the killed run's at the same step.
    reader = SummaryReader(path, extra_columns={"wall_time", "dir_name", "file_name"}, event_types={"scalars"})
    frame = reader.scalars
    if frame.empty:
        return {}
    frame = frame[frame["dir_name"] == ""]
    return {
        tag: drop_rewound_points(
            points["step"].to_numpy(np.int64),
            points["value"].to_numpy(np.float64),
            points["wall_time"].to_numpy(np.float64),
            points["file_name"].to_numpy(),
        )
        for tag, points in frame.groupby("tag", sort=True)
    }


NO_POINTS = (np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))
"""(steps, values, wall times) of a tag that a run never logged"""


@dataclass
class RunLog:
    """The scalars of one training run that the plots and the table need."""

    path: str
    env_id: str
    method: str
    seed: int
    start_time: int
    episode_steps: np.ndarray
    """global env step at which each episode ended (x of charts/episodic_return), in logging order"""
    episode_returns: np.ndarray
    last_step: int = 0
    """largest global step seen in any scalar"""
    last_sps: float = math.nan
    """the last charts/SPS value"""
    wall_time: float = 0.0
    """seconds from the first to the last scalar event"""
    last_entropy: float = math.nan
    """the last losses/entropy value (the policy's entropy on an iteration's last minibatch); NaN if none was logged"""
    collapse_step: int | None = None
    """the first step at which losses/entropy fell below COLLAPSED_ENTROPY, None if it never did"""
    health: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """{tag: (steps, values)} of losses/entropy and losses/clipfrac, one point per iteration: milestones.md reads them"""

    @property
    def collapsed(self) -> bool:
        return self.collapse_step is not None


def load_run(path: str) -> RunLog | None:
    """Read all scalar points of one run directory (all its event files); None if its name is not a run name."""
    parsed = parse_run_name(os.path.basename(os.path.normpath(path)))
    if parsed is None:
        return None
    env_id, method, seed, start_time = parsed
    scalars = read_scalars(path)
    episode_steps, episode_returns, _ = scalars.get("charts/episodic_return", NO_POINTS)
    _, sps, _ = scalars.get("charts/SPS", NO_POINTS)
    entropy_steps, entropies, _ = scalars.get("losses/entropy", NO_POINTS)
    below = np.flatnonzero(entropies < COLLAPSED_ENTROPY)
    all_steps = np.concatenate([steps for steps, _, _ in scalars.values()]) if scalars else np.zeros(0)
    all_wall_times = np.concatenate([wall_times for _, _, wall_times in scalars.values()]) if scalars else np.zeros(0)
    return RunLog(
        path=path,
        env_id=env_id,
        method=method,
        seed=seed,
        start_time=start_time,
        episode_steps=episode_steps,
        episode_returns=episode_returns,
        last_step=int(all_steps.max()) if len(all_steps) else 0,
        last_sps=float(sps[-1]) if len(sps) else math.nan,
        wall_time=float(all_wall_times.max() - all_wall_times.min()) if len(all_wall_times) else 0.0,
        last_entropy=float(entropies[-1]) if len(entropies) else math.nan,
        collapse_step=int(entropy_steps[below[0]]) if len(below) else None,
        health={tag: scalars.get(tag, NO_POINTS)[:2] for tag in HEALTH_TAGS},
    )


HEALTH_TAGS = ["losses/entropy", "losses/clipfrac"]
"""the policy's health beside its returns: an entropy near 0 is a collapsed policy, whatever it scores"""


def load_runs(directory: str) -> list[RunLog]:
    """All runs under `directory` that have finished at least one episode, one per (env, method, seed).

    Directories whose name is not a run name, and runs without a finished episode yet, are skipped with a warning.
    If the same (env, method, seed) appears twice (a run repeated by hand), the most recent one is kept.
    """
    latest: dict[tuple[str, str, int], RunLog] = {}
    for path in find_run_dirs(directory):
        run = load_run(path)
        if run is None:
            print(f"warning: skipping {path}: its name is not env_id__exp_name__seed__time", file=sys.stderr)
        elif len(run.episode_returns) == 0:
            print(f"warning: skipping {path}: no finished episode yet", file=sys.stderr)
        else:
            key = (run.env_id, run.method, run.seed)
            if key in latest:
                older, run = sorted([latest[key], run], key=lambda r: r.start_time)
                print(f"warning: {key} appears twice; using {run.path}, ignoring {older.path}", file=sys.stderr)
            latest[key] = run
    return [latest[key] for key in sorted(latest)]


def load_for_command(directory: str, out_dir: str | None, load: Callable[[str], list], nothing: str) -> tuple[list, str]:
    """(load(directory), the output directory: out_dir, or the directory itself; created). If the directory is missing
    or load finds nothing in it (`nothing` says what was looked for), one error line and exit code 1 instead."""
    if not os.path.isdir(directory):
        sys.exit(f"error: {directory} is not a directory")
    found = load(directory)
    if not found:
        sys.exit(f"error: no {nothing} under {directory}")
    out_dir = out_dir if out_dir is not None else directory
    os.makedirs(out_dir, exist_ok=True)
    return found, out_dir


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a markdown table."""
    return ["| " + " | ".join(cells) + " |" for cells in [header, ["---"] * len(header), *rows]]


def pyplot():
    """matplotlib.pyplot, headless (no display needed); imported on first use, as the sps command never draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------------------------------------------
# `python plot_results.py DIR`, the default command: the learning curves (figure2.png/.pdf), the results table per
# (env, method) (results.md/.csv) and the aggregate over games (aggregate.png, results_aggregate.csv).
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Args:
    directory: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="DIR")]
    """directory searched recursively for runs (directories holding TensorBoard event files)"""
    paper_reference: bool = False
    """if toggled, overlay the paper's Figure 2 points (read off the plot) on BeamRider panels"""
    out_dir: str | None = None
    """where figure2.png/.pdf, aggregate.png, performance_profile.png, results.md/.csv and results_aggregate.csv go; None:
    into DIR itself"""
    grid_points: int = 200
    """number of points of the common step grid the seeds' curves are interpolated onto"""
    band: Literal["std", "iqm"] = "std"
    """the curves of figure2: std, the mean over seeds ± the std (the paper's); iqm, the IQM over seeds and its 95%
    stratified-bootstrap CI at each step"""
    at_steps: tuple[int, ...] = ()
    """steps at which milestones.md compares the methods, seed by seed (e.g. 250000 500000 1000000); none: no table"""


def method_order(method: str) -> tuple[int, str]:
    """PPO first, SPRIG second, anything else alphabetically after them."""
    order = list(METHOD_NAMES.values())
    return (order.index(method) if method in order else len(order), method)


def group_runs(runs: list[RunLog]) -> dict[tuple[str, str], list[RunLog]]:
    """{(env_id, method): runs sorted by seed}, envs sorted alphabetically, methods PPO, SPRIG, others."""
    groups: dict[tuple[str, str], list[RunLog]] = {}
    for run in sorted(runs, key=lambda run: (run.env_id, method_order(run.method), run.seed)):
        groups.setdefault((run.env_id, run.method), []).append(run)
    return groups


def trailing_mean(episode_steps: np.ndarray, episode_returns: np.ndarray, grid: np.ndarray, window: int = LAST_EPISODES):
    """The smoothed curve of one seed: at each grid step, the mean of its last `window` episodes ended by then.

    A trailing running mean over episodes, held constant between episode ends (no interpolation between
    episodes); NaN before the first episode. At the last episode it equals the seed's final score.
    """
    cumulative = np.concatenate([[0.0], np.cumsum(episode_returns)])
    ended = np.searchsorted(episode_steps, grid, side="right")  # episodes ended at or before each grid step
    first = np.maximum(ended - window, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ended > 0, (cumulative[ended] - cumulative[first]) / (ended - first), np.nan)


@dataclass
class Curve:
    """Mean and std over seeds of the smoothed return curves of one (env, method) group, on a common grid."""

    env_id: str
    method: str
    steps: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    num_seeds: int
    per_seed: np.ndarray
    """the seeds' trailing-mean curves, (num_seeds, len(steps)), in seed order: the IQM band is computed from them"""


def aggregate(runs: list[RunLog], grid_points: int = 200) -> list[Curve]:
    """Per (env, method): the seeds' trailing-mean curves on a common grid, then mean and std (ddof=0) over seeds.

    The grid spans only the steps every seed reached: from the latest first episode to the earliest last episode
    over the seeds, so partial results (seeds still running) never average a different set of seeds at the end.
    """
    curves = []
    for (env_id, method), group in group_runs(runs).items():
        start = max(run.episode_steps[0] for run in group)
        end = min(run.episode_steps[-1] for run in group)
        grid = np.linspace(min(start, end), end, grid_points)
        per_seed = np.stack([trailing_mean(run.episode_steps, run.episode_returns, grid) for run in group])
        curves.append(Curve(env_id, method, grid, per_seed.mean(axis=0), per_seed.std(axis=0), len(group), per_seed))
    return curves


BOOTSTRAP_REPS = 2_000
"""resamples behind every confidence interval. rliable's default is 50,000, but each resample is a Python-level call
of the statistic (about 0.2 ms for an IQM, 0.02 ms for P(X > Y) on a 2-core machine): 2,000, a usual count for
percentile intervals, spends about 1.2 s of bootstraps on the IQMs of 3 methods on one game (50,000: half a minute)"""

BOOTSTRAP_SEED = 0
"""numpy's global RNG is seeded with this right before each interval estimate (see interval_estimate)"""

CONFIDENCE = 0.95
"""coverage of every confidence interval"""


def load_rliable():
    """rliable's `library` (interval estimates) and `metrics` (IQM, optimality gap, ...) modules, imported on first use."""
    from rliable import library, metrics

    return library, metrics


def interval_estimate(
    scores: np.ndarray | tuple[np.ndarray, np.ndarray], statistic: Callable[..., np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(point estimate, [low, high] of its 95% CI): rliable's stratified percentile bootstrap over seeds.

    `scores`: a (num_seeds, num_tasks, ...) array whose seeds are resampled within each task (task_bootstrap=False),
    or a (scores_x, scores_y) tuple for a statistic of two methods, each resampled independently. The CI has the
    shape (2, *point estimate's shape). The only bootstrap of this file: tables, aggregates and IQM bands use it.
    """
    library, _ = load_rliable()
    saved_state = np.random.get_state()
    # rliable's StratifiedBootstrap draws its resampling indices with np.random.choice, numpy's global RNG, and never
    # uses the random_state it is given: seeding the global RNG right before the call is what makes the same runs
    # give the same intervals, whichever other intervals were computed before. The caller's RNG state is restored.
    np.random.seed(BOOTSTRAP_SEED)
    try:
        points, intervals = library.get_interval_estimates(
            {"scores": scores},
            statistic,
            method="percentile",
            task_bootstrap=False,
            reps=BOOTSTRAP_REPS,
            confidence_interval_size=CONFIDENCE,
        )
    finally:
        np.random.set_state(saved_state)
    return np.asarray(points["scores"], dtype=np.float64), np.asarray(intervals["scores"], dtype=np.float64)


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y) of two (num_seeds, num_games) score arrays: on each game, the chance that a seed of X outscores a seed
    of Y, a tie counting one half; then the mean over games. It is rliable's metrics.probability_of_improvement (the
    Mann-Whitney U statistic over num_x * num_y), counted over all the pairs at once: the same numbers, without the
    two scipy calls per game that made it the slowest statistic of every bootstrap here."""
    x, y = scores_x[:, None, :], scores_y[None, :, :]  # every pair of seeds: (num_x, num_y, num_games)
    wins = np.sum(x > y, axis=(0, 1)) + 0.5 * np.sum(x == y, axis=(0, 1))
    return float(np.mean(wins / (len(scores_x) * len(scores_y))))


def iqm_band(per_seed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IQM, CI low, CI high) at each grid step of a (num_seeds, num_points) array of curves: the IQM over seeds and
    its 95% bootstrap CI, each grid step's seeds resampled on their own (a pointwise band)."""
    from scipy import stats

    value, (low, high) = interval_estimate(per_seed, lambda scores: stats.trim_mean(scores, 0.25, axis=0))
    return value, low, high


SPARE_COLORS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray", "gold", "teal", "navy", "black")
OTHER_COLORS = [colour for colour in SPARE_COLORS if colour not in METHOD_COLORS.values()] or list(SPARE_COLORS)
"""for a method METHOD_COLORS lacks (a swept SPRIG, say): the tab colours no method has"""


def method_colors(methods) -> dict[str, str]:
    """A colour per method, the same in every figure: METHOD_COLORS' own, then OTHER_COLORS in order of first sight."""
    others = iter(OTHER_COLORS * len(set(methods)))
    return {method: METHOD_COLORS.get(method) or next(others) for method in dict.fromkeys(methods)}


def game_name(env_id: str) -> str:
    """`BeamRiderNoFrameskip-v4` / `ALE/BeamRider-v5` -> `BeamRider`."""
    name = env_id.split("/")[-1].split("-")[0]
    return re.sub(r"(NoFrameskip|Deterministic)$", "", name)


# Figure 2 of the paper (Martinez-Lopez, Chen & Lu, arXiv 2502.14264), BeamRider, read off the plot by eye; see
# docs/design.md, section "The paper's setup (Table 1, Figure 2)": {method: {step: return}}.
PAPER_FIGURE2_BEAMRIDER = {
    "SPRIG": {0: 335, 1_000_000: 595, 2_000_000: 690, 3_000_000: 790, 5_000_000: 733, 6_400_000: 607, 10_000_000: 850},
    "PPO": {0: 470, 1_000_000: 520, 2_000_000: 537, 5_000_000: 590, 10_000_000: 677},
}


def step_unit(last_step: float) -> tuple[float, str]:
    """(divisor, name) of the x axis for curves reaching last_step: millions from 1M steps on, thousands below."""
    return (1e6, "millions") if last_step >= 1e6 else (1e3, "thousands")


PAPER_POINT_REACH = 0.02
"""a paper point up to 2% beyond the curves' last step still counts as inside the panel: curves end at the earliest
last episode over the seeds, so runs paused at 1,000,448 steps draw to about 995k, and the paper's 1M point belongs
on them"""


def draw_paper_reference(axis, last_step: float, unit: float) -> float:
    """The paper's Figure 2 points on a panel whose runs reach last_step: those within the runs' steps (PAPER_POINT_REACH)
    as hollow markers; for each method with points beyond them, one filled marker at the right edge at its last point's
    return, with a note of that return and step. So a 50k-step panel shows its curves, not a smear at 0 under a
    10M-step axis, and still tells where the paper ends. Returns the right edge the panel needs."""
    edge = last_step
    for method, points in PAPER_FIGURE2_BEAMRIDER.items():
        style = dict(linestyle="none", marker="o" if method == "SPRIG" else "s", color=METHOD_COLORS[method])
        inside = {step: value for step, value in points.items() if step <= last_step * (1 + PAPER_POINT_REACH)}
        edge = max([edge, *inside])
        if inside:  # hollow; not clipped, as step 0 sits on the panel's edge
            x, label = np.array(list(inside)) / unit, f"{method} paper (read off Fig. 2)"
            axis.plot(x, list(inside.values()), **style, markerfacecolor="none", clip_on=False, label=label)
        beyond = [step for step in points if step not in inside]
        if beyond:
            step, value = max(beyond), points[max(beyond)]
            label = f"{method} paper beyond these steps (its last point, at the edge)"
            axis.plot([edge / unit], [value], **style, clip_on=False, label=label)
            note = f"{method} paper: {value} at {step / 1e6:g}M steps"
            where = dict(xytext=(-8, 0), textcoords="offset points", ha="right", va="center")  # left of the marker
            axis.annotate(note, (edge / unit, value), **where, size=8, color=style["color"])
    return edge


def curves_figure(curves: list[Curve], paper_reference: bool = False, band: str = "std"):
    """The learning curves, one panel per env, each over its own runs' steps (from 0 to the last step its curves
    reach); per method a line and band (mean ± std over seeds, or with band "iqm" the IQM over seeds and its 95%
    bootstrap CI); with paper_reference, BeamRider panels show the paper's Figure 2 points (draw_paper_reference)."""
    plt = pyplot()
    env_ids = sorted({curve.env_id for curve in curves})
    columns = min(len(env_ids), 3)
    rows = math.ceil(len(env_ids) / columns)
    # Constrained layout makes room for the legends below the panels.
    figure, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 5.5 * rows), squeeze=False, layout="constrained")
    colors = method_colors(sorted({curve.method for curve in curves}, key=method_order))
    for axis, env_id in zip(axes.flat, env_ids):
        panel = [curve for curve in curves if curve.env_id == env_id]
        last_step = max(float(curve.steps[-1]) for curve in panel)
        with_paper = paper_reference and game_name(env_id) == "BeamRider"
        unit, unit_name = step_unit(last_step * (1 + PAPER_POINT_REACH) if with_paper else last_step)
        for curve in panel:
            color = colors[curve.method]
            seeds = f"{curve.num_seeds} seed" + ("s" if curve.num_seeds != 1 else "")
            x = curve.steps / unit
            if band == "iqm":
                line, low, high = iqm_band(curve.per_seed)
                label = f"{curve.method} (IQM, 95% bootstrap CI over {seeds})"
            else:
                line, low, high = curve.mean, curve.mean - curve.std, curve.mean + curve.std
                label = f"{curve.method} (mean ± std over {seeds})"
            axis.plot(x, line, color=color, label=label)
            axis.fill_between(x, low, high, color=color, alpha=0.2)
        edge = last_step
        if with_paper:
            edge = draw_paper_reference(axis, last_step, unit)
        axis.set_xlim(0, edge / unit)
        axis.set_title(env_id)
        axis.set_xlabel(f"environment steps ({unit_name})")
        axis.set_ylabel(f"episodic return (mean of last {LAST_EPISODES} episodes)")
        axis.grid(alpha=0.3)
        # Below the panel: inside it, the legend would cover curves, the paper's markers or their notes.
        axis.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    for axis in list(axes.flat)[len(env_ids) :]:
        axis.set_visible(False)
    return figure


def plot_curves(curves: list[Curve], out_dir: str, paper_reference: bool = False, band: str = "std") -> tuple[str, str]:
    """figure2.png and figure2.pdf (curves_figure); returns their paths."""
    figure = curves_figure(curves, paper_reference, band)
    png_path, pdf_path = os.path.join(out_dir, "figure2.png"), os.path.join(out_dir, "figure2.pdf")
    figure.savefig(png_path, dpi=150)
    figure.savefig(pdf_path)
    pyplot().close(figure)
    return png_path, pdf_path


# Random-play and human scores of the 57 games of the Atari-57 benchmark, for human normalisation: 0% = a uniformly
# random policy, 100% = a professional human games tester, both played from no-op starts (up to 30 no-ops). One
# published table, copied as it stands: DQN Zoo's atari_data.py (Quan & Ostrovski, 2020), which gathers the values the
# DQN line of papers normalises with (Mnih et al., 2015; van Hasselt et al., 2016; Wang et al., 2016; Badia et al.,
# 2020). Tables in use differ on one entry: some later ones give Video Pinball a random score of 0.0, not 16256.9.
# Keyed by the game's name as ALE spells it (BeamRiderNoFrameskip-v4 and ALE/BeamRider-v5 are BeamRider): (random,
# human).
RANDOM_AND_HUMAN_SCORES = {
    "Alien": (227.8, 7127.7),
    "Amidar": (5.8, 1719.5),
    "Assault": (222.4, 742.0),
    "Asterix": (210.0, 8503.3),
    "Asteroids": (719.1, 47388.7),
    "Atlantis": (12850.0, 29028.1),
    "BankHeist": (14.2, 753.1),
    "BattleZone": (2360.0, 37187.5),
    "BeamRider": (363.9, 16926.5),
    "Berzerk": (123.7, 2630.4),
    "Bowling": (23.1, 160.7),
    "Boxing": (0.1, 12.1),
    "Breakout": (1.7, 30.5),
    "Centipede": (2090.9, 12017.0),
    "ChopperCommand": (811.0, 7387.8),
    "CrazyClimber": (10780.5, 35829.4),
    "Defender": (2874.5, 18688.9),
    "DemonAttack": (152.1, 1971.0),
    "DoubleDunk": (-18.6, -16.4),
    "Enduro": (0.0, 860.5),
    "FishingDerby": (-91.7, -38.7),
    "Freeway": (0.0, 29.6),
    "Frostbite": (65.2, 4334.7),
    "Gopher": (257.6, 2412.5),
    "Gravitar": (173.0, 3351.4),
    "Hero": (1027.0, 30826.4),
    "IceHockey": (-11.2, 0.9),
    "Jamesbond": (29.0, 302.8),
    "Kangaroo": (52.0, 3035.0),
    "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3),
    "MontezumaRevenge": (0.0, 4753.3),
    "MsPacman": (307.3, 6951.6),
    "NameThisGame": (2292.3, 8049.0),
    "Phoenix": (761.4, 7242.6),
    "Pitfall": (-229.4, 6463.7),
    "Pong": (-20.7, 14.6),
    "PrivateEye": (24.9, 69571.3),
    "Qbert": (163.9, 13455.0),
    "Riverraid": (1338.5, 17118.0),
    "RoadRunner": (11.5, 7845.0),
    "Robotank": (2.2, 11.9),
    "Seaquest": (68.4, 42054.7),
    "Skiing": (-17098.1, -4336.9),
    "Solaris": (1236.3, 12326.7),
    "SpaceInvaders": (148.0, 1668.7),
    "StarGunner": (664.0, 10250.0),
    "Surround": (-10.0, 6.5),
    "Tennis": (-23.8, -8.3),
    "TimePilot": (3568.0, 5229.2),
    "Tutankham": (11.4, 167.6),
    "UpNDown": (533.4, 11693.2),
    "Venture": (0.0, 1187.5),
    "VideoPinball": (16256.9, 17667.9),
    "WizardOfWor": (563.5, 4756.5),
    "YarsRevenge": (3092.9, 54576.9),
    "Zaxxon": (32.5, 9173.3),
}


def human_normalised(env_id: str, score: float) -> float | None:
    """(score - random) / (human - random) * 100, or None for a game without reference scores."""
    if game_name(env_id) not in RANDOM_AND_HUMAN_SCORES:
        return None
    random_score, human_score = RANDOM_AND_HUMAN_SCORES[game_name(env_id)]
    return (score - random_score) / (human_score - random_score) * 100


@dataclass
class Estimate:
    """A point estimate and its 95% stratified-bootstrap confidence interval [low, high]."""

    value: float
    low: float
    high: float


def iqm_estimate(seed_scores: list[float]) -> Estimate:
    """Interquartile mean of one (env, method)'s seed scores (25% trimmed from each end: with 8 seeds the mean of the
    middle 4; with fewer than 4 seeds nothing is trimmed, the mean) and its 95% bootstrap CI over seeds."""
    _, metrics = load_rliable()
    value, (low, high) = interval_estimate(np.asarray(seed_scores, dtype=np.float64)[:, None], metrics.aggregate_iqm)
    return Estimate(float(value), float(low[0]), float(high[0]))


@dataclass
class Result:
    """One row of results.md / results.csv."""

    env_id: str
    method: str
    seed_scores: list[float] = field(default_factory=list)
    """per seed, the mean of its last (up to) 100 episodic returns, in seed order"""
    seeds: list[int] = field(default_factory=list)
    mean: float = math.nan
    std: float = math.nan
    """population std over seeds (numpy's default ddof=0)"""
    human_normalised: float | None = None
    """(mean - random) / (human - random) * 100, None for games missing from RANDOM_AND_HUMAN_SCORES"""
    iqm: Estimate | None = None
    """interquartile mean of seed_scores (25% trimmed from each end) with its 95% bootstrap CI over seeds"""
    human_normalised_iqm: Estimate | None = None
    """iqm in percent of human (as human_normalised), None for games missing from RANDOM_AND_HUMAN_SCORES"""
    runs: list["RunLog"] = field(default_factory=list)
    """the seeds' runs, in seed order: their policy health (entropy, collapse) goes into the table"""
    steps_reached: float = 0.0
    sps: float = math.nan
    wall_time: float = 0.0


def final_scores(runs: list[RunLog]) -> list[Result]:
    """One Result per (env, method): the final score of each seed (mean of its last 100 episodic returns, fewer if
    it has fewer), their mean and population std over seeds, their IQM with its 95% bootstrap CI (also human-
    normalised), and mean steps reached, SPS and wall time."""
    results = []
    for (env_id, method), group in group_runs(runs).items():
        seed_scores = [float(np.mean(run.episode_returns[-LAST_EPISODES:])) for run in group]
        mean = float(np.mean(seed_scores))
        iqm = iqm_estimate(seed_scores)
        # Human normalisation is affine with a positive slope, and both the trimmed mean and the percentile interval
        # commute with such a map: normalising the estimate is normalising each seed's score before the bootstrap.
        normalised_iqm = (
            Estimate(*(human_normalised(env_id, value) for value in (iqm.value, iqm.low, iqm.high)))
            if human_normalised(env_id, 0.0) is not None
            else None
        )
        sps_values = [run.last_sps for run in group if not math.isnan(run.last_sps)]
        results.append(
            Result(
                env_id=env_id,
                method=method,
                seed_scores=seed_scores,
                seeds=[run.seed for run in group],
                mean=mean,
                std=float(np.std(seed_scores)),
                human_normalised=human_normalised(env_id, mean),
                iqm=iqm,
                human_normalised_iqm=normalised_iqm,
                steps_reached=float(np.mean([run.last_step for run in group])),
                sps=float(np.mean(sps_values)) if sps_values else math.nan,
                wall_time=float(np.mean([run.wall_time for run in group])),
                runs=group,
            )
        )
    return results


def estimate_text(estimate: Estimate | None, decimals: int = 1) -> str:
    """`12.3 [10.1, 15.0]` (the value and its 95% CI), or an empty cell for None."""
    if estimate is None:
        return ""
    return f"{estimate.value:.{decimals}f} [{estimate.low:.{decimals}f}, {estimate.high:.{decimals}f}]"


def estimate_fields(estimate: Estimate | None, name: str, ci_name: str | None = None) -> dict[str, str]:
    """An estimate as three CSV fields, {name: value, CI_NAME_ci_low: low, CI_NAME_ci_high: high} (ci_name defaults to
    name), in full precision (repr); empty for None."""
    ci_name = ci_name or name
    values = ["", "", ""] if estimate is None else [repr(estimate.value), repr(estimate.low), repr(estimate.high)]
    return dict(zip([name, f"{ci_name}_ci_low", f"{ci_name}_ci_high"], values))


def format_seconds(seconds):
    """h:mm:ss, rounded to the second: as the training scripts print it (theirs is not imported, which would import
    torch, gymnasium and ale-py to format a number)."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def number_field(value: float | None) -> str:
    """A number as a CSV field: repr (full precision, for scripts), empty for None or NaN (nothing to report)."""
    return "" if value is None or math.isnan(value) else repr(value)


def seed_health(run: RunLog) -> str:
    """`seed 2: 1.95` (its last entropy) for a healthy policy, `seed 1: COLLAPSED at step 15,360, now 0.00`, or
    `seed 3: n/a` for a run that logged no entropy."""
    if math.isnan(run.last_entropy):
        return f"seed {run.seed}: n/a"
    if not run.collapsed:
        return f"seed {run.seed}: {run.last_entropy:.2f}"
    return f"seed {run.seed}: COLLAPSED at step {run.collapse_step:,}, now {run.last_entropy:.2f}"


def result_columns(result: Result) -> list[tuple[str, str, dict[str, object]]]:
    """The columns of results.md and results.csv, each defined once, filled in for one result: (markdown header,
    markdown cell, {CSV header: CSV field}). A markdown cell is rounded for people; the CSV keeps full precision."""
    runs = result.runs
    return [
        ("env", result.env_id, {"env_id": result.env_id}),
        ("method", result.method, {"method": result.method}),
        ("seeds", str(len(result.seeds)), {"num_seeds": len(result.seeds), "seeds": " ".join(map(str, result.seeds))}),
        (
            f"final score (mean ± std over seeds, population std ddof=0; per seed: mean of last {LAST_EPISODES} "
            "episodic returns)",
            f"{result.mean:.1f} ± {result.std:.1f}",
            {"final_score_mean": repr(result.mean), "final_score_std_ddof0": repr(result.std)},
        ),
        (
            "final score IQM over seeds [95% CI]",
            estimate_text(result.iqm),
            estimate_fields(result.iqm, "final_score_iqm"),
        ),
        (
            "per-seed final scores",
            ", ".join(f"{score:.1f}" for score in result.seed_scores),
            {"seed_final_scores": " ".join(map(repr, result.seed_scores))},
        ),
        (
            "human-normalised (%)",
            "" if result.human_normalised is None else f"{result.human_normalised:.1f}",
            {"human_normalised_percent": number_field(result.human_normalised)},
        ),
        (
            "human-normalised IQM (%) [95% CI]",
            estimate_text(result.human_normalised_iqm),
            estimate_fields(result.human_normalised_iqm, "human_normalised_iqm_percent", "human_normalised_iqm"),
        ),
        ("steps reached (mean)", f"{result.steps_reached:,.0f}", {"steps_reached_mean": repr(result.steps_reached)}),
        ("SPS (mean)", "" if math.isnan(result.sps) else f"{result.sps:.0f}", {"sps_mean": number_field(result.sps)}),
        ("wall time (mean, h:mm:ss)", format_seconds(result.wall_time), {"wall_time_seconds_mean": repr(result.wall_time)}),
        (
            f"policy health per seed (last losses/entropy; COLLAPSED once it fell below {COLLAPSED_ENTROPY})",
            "; ".join(seed_health(run) for run in runs),
            {
                "seed_last_entropies": " ".join(repr(run.last_entropy) for run in runs),
                "seed_collapsed": " ".join(str(int(run.collapsed)) for run in runs),
            },
        ),
    ]


def write_csv(path: str, columns: list[list[tuple[str, str, dict[str, object]]]]) -> None:
    """A CSV file with one row per entry of `columns` (as result_columns gives them), headed by their CSV headers."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([name for _, _, fields in columns[0] for name in fields])
        for row in columns:
            writer.writerow([value for _, _, fields in row for value in fields.values()])


def write_results(results: list[Result], out_dir: str) -> tuple[str, str]:
    """results.md (for people, and the README) and results.csv (for scripts), one row per result (there is at least
    one); returns their paths."""
    markdown_path, csv_path = os.path.join(out_dir, "results.md"), os.path.join(out_dir, "results.csv")
    columns = [result_columns(result) for result in results]
    lines = ["## Per game and method", ""]
    lines += markdown_table([header for header, _, _ in columns[0]], [[cell for _, cell, _ in row] for row in columns])
    lines.append(
        f"\nIQM: the interquartile mean over seeds (25% trimmed from each end; with fewer than 4 seeds nothing is "
        f"trimmed and it is the mean), with a 95% percentile-bootstrap CI over seeds ({BOOTSTRAP_REPS:,} resamples, "
        f"rliable; Agarwal et al., NeurIPS 2021)."
    )
    with open(markdown_path, "w") as file:
        file.write("\n".join(lines) + "\n")
    write_csv(csv_path, columns)
    return markdown_path, csv_path


@dataclass
class AggregateResult:
    """One method's row of the aggregate table: over its seeds x the games with reference scores that it ran, the
    human-normalised IQM, median, mean and optimality gap (in percent of human), each with its 95% stratified-bootstrap
    CI."""

    method: str
    env_ids: list[str]
    num_seeds: int
    """seeds per game in its score matrix: the first num_seeds (in seed order) of each game, the fewest it has"""
    scores: np.ndarray
    """the score matrix the statistics stand on: (num_seeds, len(env_ids)) human-normalised scores, 1.0 = human"""
    iqm: Estimate
    median: Estimate
    """the median over games of each game's mean over seeds: the Atari papers' usual summary (rliable's aggregate_median)"""
    mean: Estimate
    optimality_gap: Estimate
    """100 - the mean over seeds x games of min(score, 100): how far it stays below human play (rliable, gamma = 1)"""
    improvement_over_ppo: Estimate | None = None
    """P(method > PPO) over the games both ran; None for PPO itself, or where there is no PPO to compare with"""


def aggregate_scores(results: list[Result]) -> tuple[list[AggregateResult], list[str]]:
    """One AggregateResult per method that ran a game with reference scores, in method order, and the notes on what
    the aggregates leave out (games without reference scores; seeds beyond the fewest a method has on a game; games
    that not every method ran)."""
    _, metrics = load_rliable()
    per_game: dict[str, dict[str, list[float]]] = {}  # method -> env_id -> seeds' human-normalised scores, 1.0 = human
    for result in results:
        if human_normalised(result.env_id, 0.0) is not None:
            per_game.setdefault(result.method, {})[result.env_id] = [
                human_normalised(result.env_id, score) / 100 for score in result.seed_scores
            ]
    notes = []
    unscored = sorted({result.env_id for result in results if human_normalised(result.env_id, 0.0) is None})
    if unscored:
        notes.append(
            f"note: {', '.join(unscored)}: no human reference scores (not an Atari-57 game): reported raw, left out of "
            "the aggregates"
        )
    matrices: dict[str, tuple[list[str], np.ndarray]] = {}  # method -> (its env ids, (num_seeds, num_games) scores)
    for method in sorted(per_game, key=method_order):
        env_ids = sorted(per_game[method])
        counts = [len(per_game[method][env_id]) for env_id in env_ids]
        if max(counts) > min(counts):  # rliable's score matrix has the same number of seeds for every game
            notes.append(
                f"note: {method} has {', '.join(f'{count} seeds on {env_id}' for env_id, count in zip(env_ids, counts))}; "
                f"its aggregate uses the first {min(counts)} seeds (in seed order) of each game"
            )
        matrices[method] = (env_ids, np.array([per_game[method][env_id][: min(counts)] for env_id in env_ids]).T)
    if len({tuple(env_ids) for env_ids, _ in matrices.values()}) > 1:
        notes.append(
            "note: the methods ran different games; each aggregate is over the method's own games, and P(method > PPO) "
            "over the games both ran"
        )

    def statistics(scores):  # [IQM, median, mean, optimality gap] in percent of human, from scores where 1.0 = human
        return 100 * np.array(
            [
                metrics.aggregate_iqm(scores),
                metrics.aggregate_median(scores),
                metrics.aggregate_mean(scores),
                metrics.aggregate_optimality_gap(scores, gamma=1),
            ]
        )

    aggregates = []
    for method, (env_ids, scores) in matrices.items():
        values, (lows, highs) = interval_estimate(scores, statistics)
        iqm, median, mean, gap = (Estimate(float(v), float(low), float(high)) for v, low, high in zip(values, lows, highs))
        aggregates.append(AggregateResult(method, env_ids, scores.shape[0], scores, iqm, median, mean, gap))
    if "PPO" in matrices:
        ppo_env_ids, ppo_scores = matrices["PPO"]
        for aggregate in aggregates:
            if aggregate.method == "PPO":
                continue
            env_ids, scores = matrices[aggregate.method]
            common = [env_id for env_id in env_ids if env_id in ppo_env_ids]
            if not common:
                notes.append(f"note: {aggregate.method} and PPO ran no game in common: no P({aggregate.method} > PPO)")
                continue
            value, (low, high) = interval_estimate(
                (
                    scores[:, [env_ids.index(env_id) for env_id in common]],
                    ppo_scores[:, [ppo_env_ids.index(env_id) for env_id in common]],
                ),
                probability_of_improvement,
            )
            aggregate.improvement_over_ppo = Estimate(float(value), float(low[0]), float(high[0]))
    return aggregates, notes


PROFILE_POINTS = 201
"""scores (taus) at which the performance profiles are evaluated, evenly spaced"""


def performance_profiles(aggregates: list[AggregateResult]) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, ...]]]:
    """Each method's performance profile (Agarwal et al., 2021, rliable's score distribution): at each human-normalised
    score tau, the fraction of its runs (seeds x games) that score above tau, with its 95% stratified-bootstrap CI at
    each tau (seeds resampled within each game). The taus, in percent of human and the same for every method, span 0%
    (random), 100% (human) and every run's score, from 1 down to 0. Returns (taus, {method: (fractions, CI lows, CI
    highs)})."""
    scores = 100 * np.concatenate([aggregate.scores.ravel() for aggregate in aggregates])
    low, high = min(0.0, scores.min()), max(100.0, scores.max())
    step = (high - low) / (PROFILE_POINTS - 2)
    taus = np.linspace(low - step, high, PROFILE_POINTS)  # one step below the lowest score: every run is above it

    def fraction_above(matrix):  # (num_seeds, num_games), 1.0 = human -> the fraction of runs above each tau
        return (100 * matrix[..., None] > taus).mean(axis=(0, 1))

    profiles = {}
    for aggregate in aggregates:
        fractions, (lows, highs) = interval_estimate(aggregate.scores, fraction_above)
        profiles[aggregate.method] = (fractions, lows, highs)
    return taus, profiles


def plot_performance_profile(aggregates: list[AggregateResult], out_dir: str) -> str:
    """performance_profile.png: per method, the fraction of its runs above each human-normalised score, with its 95%
    CI as a band; returns its path."""
    plt = pyplot()
    taus, profiles = performance_profiles(aggregates)
    colors = method_colors(sorted({a.method for a in aggregates}, key=method_order))
    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    for aggregate in aggregates:
        fractions, lows, highs = profiles[aggregate.method]
        runs = f"{len(aggregate.env_ids)} game{'s' if len(aggregate.env_ids) != 1 else ''} x {aggregate.num_seeds} seeds"
        axis.plot(taus, fractions, color=colors[aggregate.method], label=f"{aggregate.method} ({runs})")
        axis.fill_between(taus, lows, highs, color=colors[aggregate.method], alpha=0.2)
    for score, name in [(0, "random"), (100, "human")]:
        axis.axvline(score, color="gray", linestyle="--", linewidth=1)
        axis.annotate(name, (score, 1.0), xytext=(3, -12), textcoords="offset points", color="gray", fontsize="small")
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel("human-normalised score τ (%)")
    axis.set_ylabel("fraction of runs with score > τ")
    axis.set_title(f"Performance profile, 95% stratified-bootstrap CIs over seeds ({BOOTSTRAP_REPS:,} resamples)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    path = os.path.join(out_dir, "performance_profile.png")
    figure.savefig(path, dpi=150)
    plt.close(figure)
    return path


def plot_aggregates(aggregates: list[AggregateResult], out_dir: str) -> str:
    """aggregate.png: per method, the human-normalised IQM, median, mean and optimality gap as 95% CI bars with a tick at the
    point estimate, and P(method > PPO) where it was computed; returns its path."""
    plt = pyplot()
    panels = [
        ("IQM", "human-normalised score (%)", [(a.method, a.iqm) for a in aggregates]),
        ("Median", "human-normalised score (%)", [(a.method, a.median) for a in aggregates]),
        ("Mean", "human-normalised score (%)", [(a.method, a.mean) for a in aggregates]),
        ("Optimality gap", "100 - mean of min(score, 100) (%)", [(a.method, a.optimality_gap) for a in aggregates]),
    ]
    improvements = [(a.method, a.improvement_over_ppo) for a in aggregates if a.improvement_over_ppo is not None]
    if improvements:
        panels.append(("P(method > PPO)", "probability of improvement", improvements))
    rows = max(len(entries) for _, _, entries in panels)
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 1.2 + 0.6 * rows), squeeze=False)
    colors = method_colors(sorted({a.method for a in aggregates}, key=method_order))
    for axis, (title, xlabel, entries) in zip(axes[0], panels):
        for row, (method, estimate) in enumerate(entries):
            axis.barh(row, estimate.high - estimate.low, left=estimate.low, height=0.6, color=colors[method], alpha=0.6)
            axis.vlines(estimate.value, row - 0.3, row + 0.3, color="black", linewidth=2)
        axis.set_yticks(range(len(entries)), [method for method, _ in entries])
        axis.set_ylim(-0.6, len(entries) - 0.4)
        axis.invert_yaxis()  # the first method (PPO) on top
        axis.use_sticky_edges = False  # margins beyond the bars: an interval of width 0 at an edge stays visible
        axis.margins(x=0.08)
        if title.startswith("P("):
            axis.axvline(0.5, color="gray", linestyle="--", linewidth=1)
            axis.set_xlim(-0.05, 1.05)  # a tick at exactly 0 or 1 stays visible
        axis.set_title(title)
        axis.set_xlabel(xlabel)
        axis.grid(axis="x", alpha=0.3)
    figure.suptitle(f"95% stratified-bootstrap CIs over seeds ({BOOTSTRAP_REPS:,} resamples)", fontsize="medium")
    figure.tight_layout()
    path = os.path.join(out_dir, "aggregate.png")
    figure.savefig(path, dpi=150)
    plt.close(figure)
    return path


IMPROVEMENT_HEADER = "P(method > PPO) [95% CI]"
"""the aggregate table's column of P(method > PPO): left out of results.md where no method was compared with PPO"""


def aggregate_columns(aggregate: AggregateResult) -> list[tuple[str, str, dict[str, object]]]:
    """The columns of the aggregate table in results.md and of results_aggregate.csv, each defined once, filled in for
    one method: (markdown header, markdown cell, {CSV header: CSV field}), as result_columns."""

    return [
        ("method", aggregate.method, {"method": aggregate.method}),
        (
            "games",
            ", ".join(aggregate.env_ids),
            {"env_ids": " ".join(aggregate.env_ids), "num_games": len(aggregate.env_ids)},
        ),
        ("seeds per game", str(aggregate.num_seeds), {"num_seeds_per_game": aggregate.num_seeds}),
        (
            "runs (games x seeds)",
            f"{aggregate.scores.size} ({len(aggregate.env_ids)} x {aggregate.num_seeds})",
            {"num_runs": aggregate.scores.size},
        ),
        ("IQM (%) [95% CI]", estimate_text(aggregate.iqm), estimate_fields(aggregate.iqm, "iqm_percent")),
        ("median (%) [95% CI]", estimate_text(aggregate.median), estimate_fields(aggregate.median, "median_percent")),
        ("mean (%) [95% CI]", estimate_text(aggregate.mean), estimate_fields(aggregate.mean, "mean_percent")),
        (
            "optimality gap (%) [95% CI]",
            estimate_text(aggregate.optimality_gap),
            estimate_fields(aggregate.optimality_gap, "optimality_gap_percent"),
        ),
        (
            IMPROVEMENT_HEADER,
            estimate_text(aggregate.improvement_over_ppo, decimals=2),
            estimate_fields(aggregate.improvement_over_ppo, "probability_of_improvement_over_ppo"),
        ),
    ]


def write_aggregate_results(aggregates: list[AggregateResult], notes: list[str], out_dir: str) -> str:
    """Appends the aggregate table and its notes to results.md (write_results writes it first) and writes
    results_aggregate.csv; returns the CSV's path."""
    with_improvement = any(aggregate.improvement_over_ppo is not None for aggregate in aggregates)
    columns = [aggregate_columns(aggregate) for aggregate in aggregates]
    shown = [with_improvement or header != IMPROVEMENT_HEADER for header, _, _ in columns[0]]
    lines = [
        "",
        "## Aggregate over the games with human reference scores",
        "",
        f"Human-normalised final scores (0% = random play, 100% = human), one per run: each row stands on its runs, "
        f"games x seeds per game. Interquartile mean over all runs, median over games of each game's mean over seeds, "
        f"mean, and optimality gap (100 - mean of min(score, 100)), each with a 95% stratified-bootstrap CI (seeds "
        f"resampled within each game, percentile method, {BOOTSTRAP_REPS:,} resamples; rliable, Agarwal et al., NeurIPS "
        f"2021). performance_profile.png shows, for every score, the fraction of runs above it"
        + (
            "; P(method > PPO): the probability that a run of the method beats a run of PPO on the same game, averaged "
            "over games (0.5: no difference)."
            if with_improvement
            else "."
        ),
        "",
    ]
    lines += markdown_table(
        [header for (header, _, _), show in zip(columns[0], shown) if show],
        [[cell for (_, cell, _), show in zip(row, shown) if show] for row in columns],
    )
    lines += [""] + notes if notes else []
    with open(os.path.join(out_dir, "results.md"), "a") as file:
        file.write("\n".join(lines) + "\n")
    csv_path = os.path.join(out_dir, "results_aggregate.csv")
    write_csv(csv_path, columns)
    return csv_path


def collapse_summary(results: list[Result]) -> str:
    """One line: which seeds of which (env, method) end with a collapsed policy, or that none does."""
    collapsed = [
        f"{result.method} on {result.env_id} seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"
        for result in results
        if (seeds := [str(run.seed) for run in result.runs if run.collapsed])
    ]
    if not collapsed:
        return f"collapsed policies (losses/entropy fell below {COLLAPSED_ENTROPY}): none"
    return f"collapsed policies (losses/entropy fell below {COLLAPSED_ENTROPY}): {'; '.join(collapsed)}"


def plot_results(args: Args) -> int:
    """The default command: figure2.png/.pdf, aggregate.png, performance_profile.png, results.md/.csv and
    results_aggregate.csv for all runs under args.directory."""
    if args.grid_points < 2:
        print(f"error: --grid-points must be at least 2, got {args.grid_points}", file=sys.stderr)
        return 2
    runs, out_dir = load_for_command(
        args.directory, args.out_dir, load_runs, "runs with finished episodes (TensorBoard event files)"
    )
    if args.paper_reference and not any(game_name(run.env_id) == "BeamRider" for run in runs):
        print("note: --paper-reference only marks BeamRider panels, and there is no BeamRider run", file=sys.stderr)
    figure_paths = plot_curves(aggregate(runs, args.grid_points), out_dir, args.paper_reference, args.band)
    results = final_scores(runs)
    table_paths = write_results(results, out_dir)
    if args.at_steps:
        table_paths += (write_milestones(runs, args.at_steps, out_dir),)
    aggregates, notes = aggregate_scores(results)
    if aggregates:
        figure_paths += (plot_aggregates(aggregates, out_dir), plot_performance_profile(aggregates, out_dir))
        table_paths += (write_aggregate_results(aggregates, notes, out_dir),)
    else:
        print(
            "note: no game has human reference scores (RANDOM_AND_HUMAN_SCORES): no aggregate.png, no "
            "performance_profile.png, no results_aggregate.csv",
            file=sys.stderr,
        )
    print(f"{len(runs)} runs in {len(results)} (env, method) groups")
    print(collapse_summary(results))
    for note in notes:
        print(note)
    for path in figure_paths + table_paths:
        print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# --at-steps: milestones.md, the methods compared at given steps of their runs (the first 1M steps of Figure 2, say).
# ---------------------------------------------------------------------------------------------------------------
HEALTH_ITERATIONS = 10
"""a seed's entropy and clipfrac at a step: the mean of its last 10 iterations' values up to that step (each is one
minibatch's, noisy)"""


SCALED_PERCEPTION = ("--perception", "attention-scaled")


def scaled_twins() -> dict[str, str]:
    """{a method on SPRIG's network with its features at the CNN's scale: the same method on today's network}, by label,
    from METHODS: the twin's flags are the method's without `--perception attention-scaled`."""
    labels = {method.flags: method.label for method in METHODS}
    twins = {}
    for method in METHODS:
        flags = method.flags
        for i in range(len(flags) - 1):
            if flags[i : i + 2] == SCALED_PERCEPTION and flags[:i] + flags[i + 2 :] in labels:
                twins[method.label] = labels[flags[:i] + flags[i + 2 :]]
    return twins


def improvement_pairs(methods: list[str]) -> list[tuple[str, str]]:
    """The P(X > Y) that milestones.md reports: every method over PPO; each method on the scaled network over its twin
    on today's network (under PPO's update, the comparison that decides the default network); and SPRIG over every
    other method but PPO (its variants and controls: over "PPO on SPRIG's network", the game's effect with the network
    held), unless that pair is already there the other way round."""
    over_ppo = [(method, "PPO") for method in methods if method != "PPO" and "PPO" in methods]
    twins = scaled_twins()
    over_twin = [(method, twins[method]) for method in methods if twins.get(method) in methods]
    sprig = [("SPRIG", method) for method in methods if method not in ("PPO", "SPRIG") and "SPRIG" in methods]
    return over_ppo + [pair for pair in sprig if pair[::-1] not in over_twin] + over_twin


def milestone_lines(runs: list[RunLog], step: int) -> list[str]:
    """The table of one step: per (env, method), each seed's mean of its last 100 episodes ended by then, their mean
    with a 95% bootstrap CI, each seed's entropy and clipfrac; then P(X > Y) with its CI per env. Seeds that have not
    reached the step are left out, and their count said."""
    _, metrics = load_rliable()
    header = ["env", "method", "seeds", "per seed", "mean [95% CI]", "entropy per seed", "clipfrac per seed"]
    rows, scores, notes = [], {}, []
    for (env_id, method), group in group_runs(runs).items():
        reached = [run for run in group if run.last_step >= step]
        if len(reached) < len(group):
            notes.append(f"{env_id} {method}: {len(group) - len(reached)} of {len(group)} seeds have not reached {step:,}")
        if not reached:
            continue
        seed_scores = np.array([trailing_mean(run.episode_steps, run.episode_returns, np.array([step]))[0] for run in reached])
        health = []
        for tag in HEALTH_TAGS:
            values = []
            for run in reached:
                steps, logged = run.health.get(tag, NO_POINTS[:2])
                window = logged[steps <= step][-HEALTH_ITERATIONS:]
                values.append(f"{np.mean(window):.3f}" if len(window) else "n/a")
            health.append(", ".join(values))
        value, (low, high) = interval_estimate(seed_scores[:, None], metrics.aggregate_mean)
        scores[(env_id, method)] = seed_scores
        per_seed = ", ".join(f"{score:.1f}" for score in seed_scores)
        seeds = ", ".join(str(run.seed) for run in reached)
        rows.append(
            [env_id, method, seeds, per_seed, estimate_text(Estimate(float(value), float(low[0]), float(high[0]))), *health]
        )
    lines = [f"## At {step:,} steps", ""] + markdown_table(header, rows)
    comparisons = []
    for env_id in sorted({env_id for env_id, _ in scores}):
        methods = [method for env, method in scores if env == env_id]
        for better, worse in improvement_pairs(methods):
            value, (low, high) = interval_estimate(
                (scores[(env_id, better)][:, None], scores[(env_id, worse)][:, None]), probability_of_improvement
            )
            estimate = estimate_text(Estimate(float(value), float(low[0]), float(high[0])), decimals=2)
            comparisons.append([env_id, f"P({better} > {worse})", estimate])
    if comparisons:
        lines += [""] + markdown_table(["env", "comparison", "value [95% CI]"], comparisons)
    return lines + [""] + [f"note: {note}" for note in notes] + ([""] if notes else [])


def write_milestones(runs: list[RunLog], steps: tuple[int, ...], out_dir: str) -> str:
    """milestones.md: milestone_lines at each of the steps; returns its path."""
    path = os.path.join(out_dir, "milestones.md")
    lines = ["# The methods at given steps", ""]
    for step in steps:
        lines += milestone_lines(runs, step)
    lines.append(
        f"Per seed: the mean of its last {LAST_EPISODES} episodic returns ended by the step; entropy and clipfrac: the "
        f"mean of its last {HEALTH_ITERATIONS} iterations' values up to it. Mean and P(X > Y) (the chance that a seed of "
        f"X outscores a seed of Y) with 95% percentile-bootstrap CIs over seeds ({BOOTSTRAP_REPS:,} resamples, rliable)."
    )
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------------------
# `python plot_results.py sps DIR`: the speed table of the short runs that benchmark.sh --sps makes.
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class SpeedArgs:
    directory: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="DIR")]
    """directory searched recursively for short runs (benchmark.sh --sps makes them)"""
    warmup_iterations: int = 1
    """iterations left out of the figures: the first pays for start-up and allocator warm-up"""


SPEED_COLUMNS = ["SPS", "env s/iter", "inference s/iter", "update s/iter", "iterations"]
"""the speed table's columns after method and env, as speed_table names them"""


def speed_table(run_dir: str, warmup_iterations: int = 1) -> dict[str, float] | None:
    """SPS and seconds per iteration (env stepping, action inference, update) of one run, after the warm-up.

    SPS = env steps between the warm-up's last iteration and the run's last, over the wall time between them (the
    charts/SPS events' wall times); the split is the mean of the perf/* scalars over the same iterations.
    """
    scalars = read_scalars(run_dir)
    if "charts/SPS" not in scalars:
        return None
    steps, _, wall_times = scalars["charts/SPS"]
    if len(steps) <= warmup_iterations or warmup_iterations < 1:
        return None
    first, last = warmup_iterations - 1, len(steps) - 1
    table = {
        "SPS": float((steps[last] - steps[first]) / (wall_times[last] - wall_times[first])),
        "iterations": len(steps) - warmup_iterations,
    }
    for name in ("env", "inference", "update"):
        if f"perf/{name}_seconds" in scalars:
            table[f"{name} s/iter"] = float(np.mean(scalars[f"perf/{name}_seconds"][1][warmup_iterations:]))
    return table


def speed_rows(directory: str, warmup_iterations: int) -> list[list[str]]:
    """One row of the speed table per run under `directory` with more than `warmup_iterations` iterations."""
    rows = []
    for path in find_run_dirs(directory):
        parsed = parse_run_name(os.path.basename(path))
        table = speed_table(path, warmup_iterations)
        if parsed is not None and table is not None:
            cells = [f"{table[c]:.3g}" if isinstance(table.get(c), float) else str(table.get(c, "")) for c in SPEED_COLUMNS]
            rows.append([parsed[1], parsed[0], *cells])
    return rows


def print_speeds(args: SpeedArgs) -> int:
    """`python plot_results.py sps DIR`: one row per run, printed and written to DIR/sps.md and DIR/sps.csv."""
    rows, out_dir = load_for_command(
        args.directory,
        None,
        lambda directory: speed_rows(directory, args.warmup_iterations),
        f"run with more than {args.warmup_iterations} iterations",
    )
    lines = markdown_table(["method", "env", *SPEED_COLUMNS], rows)
    print("\n".join(lines))
    with open(os.path.join(out_dir, "sps.md"), "w") as file:
        file.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, "sps.csv"), "w", newline="") as file:  # what benchmark.sh's cost estimate reads
        csv.writer(file).writerows([["method", "env", *SPEED_COLUMNS], *rows])
    return 0


# ---------------------------------------------------------------------------------------------------------------
# `python plot_results.py attention --model PATH`: where a trained SPRIG agent's perception attends.
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class AttentionArgs:
    model: str
    """a SPRIG agent saved by `sprig_ppo_atari.py --save-model` (runs/RUN/sprig_ppo_atari.cleanrl_model)"""
    env_id: str = "BeamRiderNoFrameskip-v4"
    """the game to play one episode of"""
    seed: int = 1
    """seed of the episode (no-op starts and sampled actions)"""
    out_dir: str = "attention"
    """where attention_grid.png, attention.gif and attention_summary.md go"""
    grid_steps: int = 6
    """how many evenly spaced steps of the episode the PNG grid shows"""
    max_steps: int = 5000
    """cut the game after this many agent steps (the up-to-30 no-op frames at its start included)"""
    gif_every: int = 2
    """keep every k-th step in the GIF (a whole BeamRider episode is a few thousand steps)"""


def plot_attention(args: AttentionArgs) -> int:
    """`python plot_results.py attention --model PATH`: play one episode (all lives) with a saved SPRIG agent and
    draw where its perception attends: a PNG grid, a GIF of the whole episode, and each block's mean mask."""
    import torch
    from PIL import Image

    import sprig_ppo_atari

    # The script's own agent loading and game loop (its --eval-episodes), watching each observation on the way.
    agent = sprig_ppo_atari.load_agent(args.model, "--model").eval()
    if isinstance(agent.perception, sprig_ppo_atari.NatureCNN):
        raise SystemExit(
            f"error: --model: {args.model} is a --perception nature agent: its CNN has no attention masks to draw"
        )
    game = sprig_ppo_atari.Args(env_id=args.env_id, seed=args.seed, max_episode_steps=args.max_steps, cuda=False)
    sprig_ppo_atari.check_args(game)
    frames, masks = [], [[], [], []]

    def watch(obs):
        with torch.no_grad():
            _, step_masks = agent.perception(obs / 255.0)
        frames.append(obs[0, -1].numpy())
        for block, mask in zip(masks, step_masks):
            block.append(mask[0])

    (episodic_return,) = sprig_ppo_atari.evaluate(agent, game, torch.device("cpu"), episodes=1, watch=watch)
    frames = np.stack(frames)  # (T, 84, 84)
    masks = [torch.stack(block) for block in masks]  # three (T, 1, h, w)
    os.makedirs(args.out_dir, exist_ok=True)

    shown = np.linspace(0, len(frames) - 1, min(args.grid_steps, len(frames))).round().astype(int)
    grid = sprig_ppo_atari.attention_figure(frames[shown], [mask[shown] for mask in masks], steps=list(shown))
    grid_path = os.path.join(args.out_dir, "attention_grid.png")
    Image.fromarray(grid).save(grid_path)

    kept = np.arange(0, len(frames), args.gif_every)
    overlays = sprig_ppo_atari.attention_overlays(frames[kept], [mask[kept] for mask in masks])  # (T', 3, 84, 84, 3)
    rows = np.concatenate([np.repeat(frames[kept][..., None], 3, axis=-1)[:, None], overlays], axis=1)
    pictures = [Image.fromarray(np.concatenate(list(row), axis=1)) for row in rows]  # frame | block 1 | 2 | 3
    gif_path = os.path.join(args.out_dir, "attention.gif")
    pictures[0].save(gif_path, save_all=True, append_images=pictures[1:], duration=50, loop=0)

    means = [mask.mean().item() for mask in masks]
    summary = [
        f"# Attention of {os.path.basename(args.model)} on {args.env_id} (seed {args.seed})",
        "",
        f"{len(frames)} agent steps, return {episodic_return} (one game; --max-steps {args.max_steps} cuts it, no-op starts "
        "included).",
        "",
        "| block | map | mean mask over the episode |",
        "| --- | --- | --- |",
    ] + [f"| {k} | {tuple(mask.shape[-2:])} | {mean:.4f} |" for k, (mask, mean) in enumerate(zip(masks, means), start=1)]
    summary_path = os.path.join(args.out_dir, "attention_summary.md")
    with open(summary_path, "w") as file:
        file.write("\n".join(summary) + "\n")
    print("\n".join(summary[2:]))
    for path in (grid_path, gif_path, summary_path):
        print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# `python plot_results.py tradeoff DIR`: the ablation of one SPRIG coefficient that benchmark.sh --sweep runs.
# ---------------------------------------------------------------------------------------------------------------
LAST_ITERATIONS_PERCENT = 10
"""attention cost of a seed = mean of its sprig/attention_cost over its last 10% of iterations (rounded up, at least
one): the cost the trained leader ends at, less noisy than the last iteration alone"""


@dataclass
class TradeoffArgs:
    directory: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="DIR")]
    """directory searched recursively for swept runs (benchmark.sh --sweep makes them; exp_name sprig_FLAG=VALUE)"""
    out_dir: str | None = None
    """where tradeoff_FLAG.png and tradeoff_FLAG.md go; None: into DIR itself"""


@dataclass
class TradeoffPoint:
    """One value of one swept flag on one env: each seed's final return and attention cost, and their mean ± std."""

    flag: str
    env_id: str
    value: float
    value_text: str
    """the value as written in the run name (and on the command line)"""
    seeds: list[int]
    returns: list[float]
    """per seed, the mean of its last (up to) 100 episodic returns, in seed order"""
    costs: list[float]
    """per seed, its final attention cost (see final_attention_cost); NaN if it logged none yet"""
    return_mean: float
    return_std: float
    """population std over seeds (ddof=0), as in results.md"""
    cost_mean: float
    """over the seeds that logged a cost"""
    cost_std: float


def final_attention_cost(run_dir: str) -> float:
    """Mean of the run's sprig/attention_cost (one point per iteration) over its last 10% of iterations; NaN if none."""
    _, costs, _ = read_scalars(run_dir).get("sprig/attention_cost", NO_POINTS)
    if len(costs) == 0:
        return math.nan
    count = max(1, -(-len(costs) * LAST_ITERATIONS_PERCENT // 100))  # integer ceil: 15 iterations -> the last 2
    return float(np.mean(costs[-count:]))


def tradeoff_points(directory: str) -> list[TradeoffPoint]:
    """One TradeoffPoint per (swept flag, env, value) among the runs under `directory`, sorted by flag, env, value.

    Runs that are not swept (plain PPO and SPRIG) are left out; seeds are those load_runs keeps (finished episodes).
    """
    groups: dict[tuple[str, str, str], list[RunLog]] = {}
    for run in load_runs(directory):
        exp_name = "__".join(os.path.basename(os.path.normpath(run.path)).split("__")[1:-2])
        swept = parse_sweep(exp_name)
        if swept is not None:
            groups.setdefault((swept[0], run.env_id, swept[1]), []).append(run)
    points = []
    for (flag, env_id, value_text), group in groups.items():
        group.sort(key=lambda run: run.seed)
        returns = [float(np.mean(run.episode_returns[-LAST_EPISODES:])) for run in group]
        costs = [final_attention_cost(run.path) for run in group]
        logged_costs = [cost for cost in costs if not math.isnan(cost)]
        points.append(
            TradeoffPoint(
                flag=flag,
                env_id=env_id,
                value=float(value_text),
                value_text=value_text,
                seeds=[run.seed for run in group],
                returns=returns,
                costs=costs,
                return_mean=float(np.mean(returns)),
                return_std=float(np.std(returns)),
                cost_mean=float(np.mean(logged_costs)) if logged_costs else math.nan,
                cost_std=float(np.std(logged_costs)) if logged_costs else math.nan,
            )
        )
    return sorted(points, key=lambda point: (point.flag, point.env_id, point.value))


def write_tradeoff_table(points: list[TradeoffPoint], flag: str, out_dir: str) -> str:
    """tradeoff_FLAG.md: one row per (env, value) of one swept flag; returns its path."""

    def cost_text(cost):
        return "n/a" if math.isnan(cost) else f"{cost:.3g}"

    def costs_mean_std_text(mean, std):  # std to the mean's decimals (3 significant digits), hiding float32 noise
        if math.isnan(mean):
            return "n/a"
        decimals = 0 if mean == 0 else max(0, 2 - math.floor(math.log10(abs(mean))))
        return f"{mean:.{decimals}f} ± {std:.{decimals}f}"

    header = [
        "env",
        flag,
        "seeds",
        f"final return (mean ± std over seeds, ddof=0; per seed: mean of last {LAST_EPISODES} episodic returns)",
        f"attention cost (mean ± std over seeds, ddof=0; per seed: mean of sprig/attention_cost over its last "
        f"{LAST_ITERATIONS_PERCENT}% of iterations)",
        "per-seed final returns",
        "per-seed attention costs",
    ]
    rows = [
        [
            point.env_id,
            point.value_text,
            str(len(point.seeds)),
            f"{point.return_mean:.1f} ± {point.return_std:.1f}",
            costs_mean_std_text(point.cost_mean, point.cost_std),
            ", ".join(f"{r:.1f}" for r in point.returns),
            ", ".join(cost_text(cost) for cost in point.costs),
        ]
        for point in points
    ]
    lines = markdown_table(header, rows)
    if flag == "attn-cost-coef":
        lines.append(
            "\nThe attention cost is C_θ = λ_c · Σ_k mean(m_k), so it scales with attn-cost-coef (λ_c) itself; the "
            "attention mass Σ_k mean(m_k) is the cost divided by the value."
        )
    path = os.path.join(out_dir, f"tradeoff_{flag}.md")
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")
    return path


def plot_tradeoff(points: list[TradeoffPoint], flag: str, out_dir: str) -> str:
    """tradeoff_FLAG.png: per env, final return and attention cost against the swept value; returns its path."""
    plt = pyplot()
    env_ids = sorted({point.env_id for point in points})
    figure, axes = plt.subplots(len(env_ids), 2, figsize=(11, 4 * len(env_ids)), squeeze=False)
    for (return_axis, cost_axis), env_id in zip(axes, env_ids):
        env_points = [point for point in points if point.env_id == env_id]
        values = [point.value for point in env_points]
        for axis, per_seed, means, label in [
            (return_axis, [p.returns for p in env_points], [p.return_mean for p in env_points], "final return"),
            (cost_axis, [p.costs for p in env_points], [p.cost_mean for p in env_points], "attention cost"),
        ]:
            seed_values = [value for value, seeds in zip(values, per_seed) for _ in seeds]
            axis.scatter(seed_values, [y for seeds in per_seed for y in seeds], alpha=0.5, label="each seed")
            axis.plot(values, means, marker="o", color="tab:orange", label="mean over seeds")
            # Values spaced by factors (0, 1e-4, 1e-3: each positive one at least 3x the one before, 10x overall) get a
            # log axis, linear around 0; evenly spaced ones (0, 0.3, 0.7, 1) a linear axis.
            positive = sorted(value for value in values if value > 0)
            if (
                len(positive) >= 2
                and positive[-1] >= 10 * positive[0]
                and all(b >= 3 * a for a, b in zip(positive, positive[1:]))
            ):
                if min(values) > 0:
                    axis.set_xscale("log")
                else:
                    axis.set_xscale("symlog", linthresh=min(positive))
            axis.set_title(f"{env_id}: {label}")
            axis.set_xlabel(f"--{flag}")
            axis.grid(alpha=0.3)
            axis.legend(fontsize="small")
        return_axis.set_ylabel(f"mean of last {LAST_EPISODES} episodic returns")
        cost_axis.set_ylabel(f"sprig/attention_cost, last {LAST_ITERATIONS_PERCENT}% of iterations")
    figure.tight_layout()
    path = os.path.join(out_dir, f"tradeoff_{flag}.png")
    figure.savefig(path, dpi=150)
    plt.close(figure)
    return path


def plot_tradeoffs(args: TradeoffArgs) -> int:
    """`python plot_results.py tradeoff DIR`: tradeoff_FLAG.png and tradeoff_FLAG.md for each swept flag."""
    points, out_dir = load_for_command(
        args.directory,
        args.out_dir,
        tradeoff_points,
        "swept runs (exp_name sprig_FLAG=VALUE, from benchmark.sh --sweep) with finished episodes",
    )
    for flag in sorted({point.flag for point in points}):
        flag_points = [point for point in points if point.flag == flag]
        for path in (plot_tradeoff(flag_points, flag, out_dir), write_tradeoff_table(flag_points, flag, out_dir)):
            print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# `python plot_results.py compact DIR OUT`: the scalars the figures and tables read, small enough to commit.
# ---------------------------------------------------------------------------------------------------------------
COMPACT_TAGS = ["charts/episodic_return", "charts/episodic_length", "charts/SPS", "losses/entropy", "losses/clipfrac"]
COMPACT_TAGS += ["losses/approx_kl", "sprig/attention_cost"] + [f"sprig/mask_mean_block{k}" for k in (1, 2, 3)]
COMPACT_TAGS += ["sprig/feature_norm"]
"""what a compact copy of a run keeps: returns and lengths with their steps, the policy's health, speed, the masks, the
scale of the leader's features"""


@dataclass
class CompactArgs:
    directory: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="DIR")]
    """directory searched recursively for runs (a benchmark.sh --out, or a runs/ directory)"""
    out: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="OUT")]
    """where the compact copies go, each in OUT/{run_name} (no runs/ level: .gitignore leaves those out of git)"""


def write_compact_run(run_dir: str, out_dir: str) -> int:
    """Write the COMPACT_TAGS of one run (as read_scalars reads them: a resumed run's superseded points dropped) into
    one new event file in out_dir, with their steps and wall times. Returns the number of points written."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    scalars = read_scalars(run_dir)
    points = sorted(
        (wall_time, int(step), tag, float(value))
        for tag in COMPACT_TAGS
        for step, value, wall_time in zip(*scalars.get(tag, NO_POINTS))
    )
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):  # a copy made again replaces the one before
        if name.startswith("events.out.tfevents."):
            os.remove(os.path.join(out_dir, name))
    writer = EventFileWriter(out_dir)
    for wall_time, step, tag, value in points:
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
        writer.add_event(event_pb2.Event(wall_time=wall_time, step=step, summary=summary))
    writer.close()
    return len(points)


def compact_runs(args: CompactArgs) -> int:
    """Copy every run under args.directory, COMPACT_TAGS only, to args.out/{run_name}: the default command reads the
    copies as it reads the runs themselves."""
    runs = [path for path in find_run_dirs(args.directory) if parse_run_name(os.path.basename(path)) is not None]
    if not runs:
        print(f"error: no runs (TensorBoard event files in run directories) under {args.directory}", file=sys.stderr)
        return 1
    for path in runs:
        out_dir = os.path.join(args.out, os.path.basename(path))
        count = write_compact_run(path, out_dir)
        size = sum(os.path.getsize(os.path.join(out_dir, name)) for name in os.listdir(out_dir))
        print(f"{out_dir}: {count} points, {size / 1024:.0f} KiB")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# The command line: the default command, or one of the others by name.
# ---------------------------------------------------------------------------------------------------------------
# Commands besides the default one, as `python plot_results.py NAME [flags]`: NAME -> (its Args class, its function).
# A directory that happens to share a command's name can still be plotted as ./NAME.
SUBCOMMANDS: dict[str, tuple[type, Callable[..., int]]] = {
    "sps": (SpeedArgs, print_speeds),
    "attention": (AttentionArgs, plot_attention),
    "tradeoff": (TradeoffArgs, plot_tradeoffs),
    "compact": (CompactArgs, compact_runs),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        args_class, command = SUBCOMMANDS[argv[0]]
        return command(tyro.cli(args_class, args=argv[1:], prog=f"plot_results.py {argv[0]}"))
    description = __doc__.split("\n\n")[0]
    if SUBCOMMANDS:
        description += f"\n\nOther commands: {', '.join(SUBCOMMANDS)} (python plot_results.py COMMAND --help)."
    return plot_results(tyro.cli(Args, args=argv, prog="plot_results.py", description=description))


if __name__ == "__main__":
    sys.exit(main())
