"""plot_results.py: scores, curves and files from synthetic TensorBoard logs whose right answers are known by hand.

The logs are written with the same SummaryWriter the training scripts use, in directories laid out and named as
benchmark.sh and the scripts name them; no training happens.
"""

import csv
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
from torch.utils.tensorboard import SummaryWriter

import plot_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BEAMRIDER = "BeamRiderNoFrameskip-v4"
START_WALL_TIME = 1_700_000_000.0


def write_run(root, env_id, exp_name, seed, returns, steps, sps=(), wall_seconds=100.0, entropy=()):
    """One run as the scripts log it: charts/episodic_return at each episode's end step, charts/SPS and losses/entropy
    as (step, value) pairs; event wall times spread evenly over `wall_seconds`."""
    method_dir = {"ppo_atari": "ppo", "sprig_ppo_atari": "sprig"}.get(exp_name, exp_name)
    run_dir = root / env_id / method_dir / f"seed{seed}" / "runs" / f"{env_id}__{exp_name}__{seed}__{1_700_000_000 + seed}"
    writer = SummaryWriter(str(run_dir))
    events = sorted(
        [(step, "charts/episodic_return", value) for step, value in zip(steps, returns)]
        + [(s, "charts/SPS", v) for s, v in sps]
        + [(s, "losses/entropy", v) for s, v in entropy]
    )
    for index, (step, tag, value) in enumerate(events):
        wall_time = START_WALL_TIME + wall_seconds * index / (len(events) - 1)
        writer.add_scalar(tag, value, step, walltime=wall_time)
    writer.close()
    return run_dir


# PPO, BeamRider. Seed 1: 150 episodes returning 0, 1, ..., 149, one every 1000 steps -> last 100: 50..149, mean 99.5.
# Seed 2: 40 episodes returning 0, 10, ..., 390, one every 3000 steps -> fewer than 100: mean of all, 195.
# Seed 3: 30 episodes of 1000 then 100 of 200, one every 1000 steps -> last 100 are all 200 (all 130 would give 353.8).
PPO_SEEDS = {
    1: ([float(i) for i in range(150)], [1000 * (i + 1) for i in range(150)]),
    2: ([10.0 * i for i in range(40)], [3000 * (i + 1) for i in range(40)]),
    3: ([1000.0] * 30 + [200.0] * 100, [1000 * (i + 1) for i in range(130)]),
}
PPO_FINALS = [99.5, 195.0, 200.0]
# SPRIG, BeamRider. Seed 1: 120 episodes returning 500..619 -> last 100: 520..619, mean 569.5.
# Seed 2: 101 episodes, the first -10000, then 700s -> 700. Seed 3: 60 episodes of 400 -> 400.
SPRIG_SEEDS = {
    1: ([500.0 + i for i in range(120)], [2000 * (i + 1) for i in range(120)]),
    2: ([-10000.0] + [700.0] * 100, [2000 * (i + 1) for i in range(101)]),
    3: ([400.0] * 60, [4000 * (i + 1) for i in range(60)]),
}
SPRIG_FINALS = [569.5, 700.0, 400.0]
# charts/SPS per seed (last value counts) and the step of the last iteration, past the last episode.
SPS = {1: [(160_000, 90.0), (161_000, 110.0)], 2: [(121_000, 130.0)], 3: [(250_000, 150.0)]}


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    """benchmark.sh's layout: 2 methods x 3 seeds on BeamRider, one seed of an unlisted game, one run not started."""
    root = tmp_path_factory.mktemp("benchmark_results") / "cleanrl"
    for seed, (returns, steps) in PPO_SEEDS.items():
        write_run(root, BEAMRIDER, "ppo_atari", seed, returns, steps, SPS[seed], wall_seconds=100.0 * seed)
    for seed, (returns, steps) in SPRIG_SEEDS.items():
        write_run(root, BEAMRIDER, "sprig_ppo_atari", seed, returns, steps, SPS[seed], wall_seconds=100.0 * seed)
    write_run(root, "MyGameNoFrameskip-v4", "my_variant", 7, [5.0, 7.0], [100, 200])
    # A run that has not finished an episode yet: only SPS so far. It must be skipped, not break anything.
    write_run(root, BEAMRIDER, "sprig_ppo_atari", 4, [], [], [(1000, 50.0), (2000, 60.0)])
    return root


def population_std(values):
    mean = sum(values) / len(values)
    return math.sqrt(sum((value - mean) ** 2 for value in values) / len(values))


def results_by_method(directory):
    return {(result.env_id, result.method): result for result in plot_results.final_scores(plot_results.load_runs(directory))}


def test_plot_results_takes_its_methods_from_methods_py_beside_it_without_the_benchmark(tmp_path):
    for name in ("plot_results.py", "methods.py"):
        shutil.copy(os.path.join(REPO, name), tmp_path / name)
    code = "import plot_results as p; print(p.__file__); print(p.METHOD_NAMES['sprig-pg'], p.METHOD_COLORS['PPO'])"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(tmp_path / "plot_results.py"), "SPRIG-pg tab:blue"]
    assert not {"benchmark.sh", "benchmark.py"} & set(os.listdir(tmp_path))


def test_run_name_gives_env_method_seed_and_time():
    assert plot_results.parse_run_name(f"{BEAMRIDER}__ppo_atari__3__1700000000") == (BEAMRIDER, "PPO", 3, 1700000000)
    assert plot_results.parse_run_name(f"{BEAMRIDER}__sprig_ppo_atari__1__17") == (BEAMRIDER, "SPRIG", 1, 17)
    assert plot_results.parse_run_name(f"{BEAMRIDER}__sprig-implicit__2__17") == (BEAMRIDER, "SPRIG-implicit", 2, 17)
    assert plot_results.parse_run_name("Pong-v5__my__exp__2__17") == ("Pong-v5", "my__exp", 2, 17)
    assert plot_results.parse_run_name("not_a_run") is None


def test_final_score_is_the_mean_of_each_seeds_last_100_returns_then_mean_and_population_std_over_seeds(results_dir):
    results = results_by_method(results_dir)
    ppo, sprig = results[(BEAMRIDER, "PPO")], results[(BEAMRIDER, "SPRIG")]
    assert ppo.seeds == [1, 2, 3] and sprig.seeds == [1, 2, 3]  # the run without episodes is not a seed
    assert ppo.seed_scores == pytest.approx(PPO_FINALS)
    assert sprig.seed_scores == pytest.approx(SPRIG_FINALS)
    assert ppo.mean == pytest.approx((99.5 + 195.0 + 200.0) / 3)
    assert sprig.mean == pytest.approx((569.5 + 700.0 + 400.0) / 3)
    assert ppo.std == pytest.approx(population_std(PPO_FINALS))
    assert sprig.std == pytest.approx(math.sqrt(((569.5 - 556.5) ** 2 + (700 - 556.5) ** 2 + (400 - 556.5) ** 2) / 3))


def test_human_normalised_score_uses_the_random_and_human_reference_scores(results_dir):
    results = results_by_method(results_dir)
    assert results[(BEAMRIDER, "SPRIG")].human_normalised == pytest.approx((556.5 - 363.9) / (16926.5 - 363.9) * 100)
    assert results[("MyGameNoFrameskip-v4", "my_variant")].human_normalised is None
    assert plot_results.human_normalised("ALE/Pong-v5", 14.6) == pytest.approx(100.0)
    assert plot_results.human_normalised("BreakoutNoFrameskip-v4", 1.7) == pytest.approx(0.0)


def test_the_reference_table_holds_the_57_games_of_atari_57_as_ale_names_them():
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    table = plot_results.RANDOM_AND_HUMAN_SCORES
    assert len(table) == 57 and all(f"ALE/{game}-v5" in gymnasium.registry for game in table)
    assert all(random_score < human_score for random_score, human_score in table.values())
    atari5 = {
        "BattleZone": (2360.0, 37187.5),
        "DoubleDunk": (-18.6, -16.4),
        "NameThisGame": (2292.3, 8049.0),
        "Phoenix": (761.4, 7242.6),
        "Qbert": (163.9, 13455.0),
    }
    assert {game: table[game] for game in atari5} == atari5 and table["BeamRider"] == (363.9, 16926.5)
    assert plot_results.human_normalised("DoubleDunkNoFrameskip-v4", -16.4) == pytest.approx(100.0)
    assert plot_results.human_normalised("ALE/Phoenix-v5", 761.4) == pytest.approx(0.0)


def test_steps_reached_sps_and_wall_time_are_means_over_seeds(results_dir):
    ppo = results_by_method(results_dir)[(BEAMRIDER, "PPO")]
    assert ppo.steps_reached == pytest.approx((161_000 + 121_000 + 250_000) / 3)  # the last step of any scalar
    assert ppo.sps == pytest.approx((110.0 + 130.0 + 150.0) / 3)  # each seed's last SPS
    assert ppo.wall_time == pytest.approx((100.0 + 200.0 + 300.0) / 3, abs=0.01)


def test_curves_of_partial_results_span_only_the_steps_every_seed_reached(results_dir):
    runs = [run for run in plot_results.load_runs(results_dir) if run.method == "PPO"]
    [curve] = plot_results.aggregate(runs, grid_points=50)
    # First episodes end at 1000, 3000, 1000; last ones at 150000, 120000, 130000.
    assert curve.num_seeds == 3 and len(curve.steps) == 50
    assert curve.steps[0] == 3000 and curve.steps[-1] == 120_000
    # At step 120000 the seeds have 120, 40 and 120 episodes: means of the last 100 are
    # 69.5 (20..119), 195 (all 40) and (10 * 1000 + 90 * 200) / 100 = 280.
    at_end = [69.5, 195.0, 280.0]
    assert curve.mean[-1] == pytest.approx(sum(at_end) / 3)
    assert curve.std[-1] == pytest.approx(population_std(at_end))
    # At step 3000: seed 1 has 0, 1, 2 -> 1; seed 2 has 0 -> 0; seed 3 has 1000 x 3 -> 1000.
    assert curve.mean[0] == pytest.approx((1.0 + 0.0 + 1000.0) / 3)


def test_every_scalar_point_is_loaded_not_a_sample(tmp_path):
    returns = [float(i % 7) for i in range(10_500)]  # more than EventAccumulator's default sample of 10000
    write_run(tmp_path, BEAMRIDER, "ppo_atari", 1, returns, list(range(1, 10_501)))
    [run] = plot_results.load_runs(tmp_path)
    assert len(run.episode_returns) == 10_500
    assert run.episode_returns.tolist() == returns


def test_points_a_restarted_run_logged_again_replace_the_old_ones():
    # Logged up to step 500, killed, restarted from a checkpoint at step 300 and logged on to 600.
    steps = np.array([100, 200, 300, 400, 500, 300, 400, 600])
    values = np.arange(8.0)
    kept_steps, kept_values, _ = plot_results.drop_rewound_points(steps, values, np.arange(8.0))
    assert kept_steps.tolist() == [100, 200, 300, 300, 400, 600]
    assert kept_values.tolist() == [0, 1, 2, 5, 6, 7]


def test_equal_steps_are_kept_within_an_event_file_and_superseded_from_a_later_one():
    # File a: two episodes end at step 200, then one at 300; file b (the resumed run) logs step 200 again.
    steps, values = np.array([100, 200, 200, 300, 200]), np.arange(5.0)
    kept_steps, kept_values, _ = plot_results.drop_rewound_points(steps, values, np.arange(5.0), np.array(list("aaaab")))
    assert kept_steps.tolist() == [100, 200] and kept_values.tolist() == [0, 4]
    kept_steps, kept_values, _ = plot_results.drop_rewound_points(
        steps[:4], values[:4], np.arange(4.0), np.array(list("aaaa"))
    )
    assert kept_steps.tolist() == [100, 200, 200, 300]


def test_a_resumed_runs_steps_are_read_once_with_the_values_it_logged_again(tmp_path):
    # Logged steps 1..6, killed, resumed from a checkpoint at step 3 by a second writer in the same directory (a second
    # event file, later wall times) that logs steps 4..8 again with other values.
    run_dir = tmp_path / f"{BEAMRIDER}__ppo_atari__1__1700000001"
    first = SummaryWriter(str(run_dir))
    for step in range(1, 7):
        first.add_scalar("charts/episodic_return", float(step), step, walltime=START_WALL_TIME + step)
    first.close()
    second = SummaryWriter(str(run_dir))
    for step in range(4, 9):
        second.add_scalar("charts/episodic_return", 100.0 + step, step, walltime=START_WALL_TIME + 100 + step)
    second.close()
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2
    steps, values, wall_times = plot_results.read_scalars(str(run_dir))["charts/episodic_return"]
    assert steps.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert values.tolist() == [1.0, 2.0, 3.0, 104.0, 105.0, 106.0, 107.0, 108.0]
    assert wall_times.tolist() == [START_WALL_TIME + t for t in (1, 2, 3, 104, 105, 106, 107, 108)]
    run = plot_results.load_run(str(run_dir))
    assert run.episode_steps.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert run.episode_returns.tolist() == [1.0, 2.0, 3.0, 104.0, 105.0, 106.0, 107.0, 108.0]
    assert run.last_step == 8 and run.wall_time == pytest.approx(107.0)


def test_a_compact_copy_keeps_the_listed_tags_of_a_resumed_run_once_and_plots_the_same_results(results_dir, tmp_path):
    run_dir = tmp_path / "runs" / f"{BEAMRIDER}__sprig-joint__1__1700000001"
    first = SummaryWriter(str(run_dir))
    for step in range(1, 7):
        first.add_scalar("charts/episodic_return", float(step), step, walltime=START_WALL_TIME + step)
        first.add_scalar("losses/value_loss", 0.5, step, walltime=START_WALL_TIME + step)  # not a compact tag
    first.close()
    second = SummaryWriter(str(run_dir))  # resumed from step 3
    for step in range(4, 9):
        second.add_scalar("charts/episodic_return", 100.0 + step, step, walltime=START_WALL_TIME + 100 + step)
        second.add_scalar("sprig/mask_mean_block2", 0.25, step, walltime=START_WALL_TIME + 100 + step)
        second.add_scalar("sprig/feature_norm", 2.0, step, walltime=START_WALL_TIME + 100 + step)
    second.close()
    result = run_cli("compact", tmp_path / "runs", tmp_path / "compact")
    assert result.returncode == 0, result.stderr
    copy = tmp_path / "compact" / run_dir.name
    assert len(list(copy.glob("events.out.tfevents.*"))) == 1 and f"{copy}: 18 points" in result.stdout  # 8, 5 and 5
    scalars = plot_results.read_scalars(str(copy))
    assert set(scalars) == {"charts/episodic_return", "sprig/mask_mean_block2", "sprig/feature_norm"}
    steps, values, wall_times = scalars["charts/episodic_return"]
    assert steps.tolist() == [1, 2, 3, 4, 5, 6, 7, 8] and values.tolist() == [1, 2, 3, 104, 105, 106, 107, 108]
    assert wall_times.tolist() == [START_WALL_TIME + t for t in (1, 2, 3, 104, 105, 106, 107, 108)]
    assert plot_results.load_run(str(copy)).method == "PPO on SPRIG's network"
    # A whole benchmark directory: its compact copy gives the same results table, and compacting again replaces it.
    for _ in range(2):
        assert run_cli("compact", results_dir, tmp_path / "results").returncode == 0
    for directory in (results_dir, tmp_path / "results"):
        assert run_cli(directory, "--out-dir", tmp_path / f"out_{directory.name}", "--grid-points", "20").returncode == 0
    tables = [(tmp_path / f"out_{name}" / "results.md").read_text() for name in (results_dir.name, "results")]
    assert tables[0] == tables[1]


def test_speed_table_sps_is_the_steps_over_the_wall_time_after_the_warmup_iteration(tmp_path):
    # charts/SPS at steps 1000, 2000, 4000, logged at 0, 50 and 100 s: after the first iteration, 3000 steps in 100 s.
    run_dir = write_run(tmp_path, BEAMRIDER, "ppo_atari", 1, [], [], [(1000, 1.0), (2000, 2.0), (4000, 3.0)], 100.0)
    assert plot_results.speed_table(str(run_dir)) == {"SPS": pytest.approx(30.0), "iterations": 2}
    assert plot_results.speed_table(str(run_dir), warmup_iterations=3) is None


def run_cli(*args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "plot_results.py"), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_cli_writes_figure_png_pdf_results_md_and_csv_with_paper_reference(results_dir, tmp_path):
    out_dir = tmp_path / "figures"
    result = run_cli(results_dir, "--paper-reference", "--out-dir", out_dir, "--grid-points", "50")
    assert result.returncode == 0, result.stderr
    for name in ["figure2.png", "figure2.pdf", "results.md", "results.csv"]:
        assert (out_dir / name).stat().st_size > 0, name
    assert (out_dir / "figure2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out_dir / "figure2.pdf").read_bytes()[:5] == b"%PDF-"
    assert "no finished episode yet" in result.stderr  # the run that has not finished an episode
    markdown = (out_dir / "results.md").read_text()
    assert "ddof=0" in markdown
    assert f"| {BEAMRIDER} | PPO | 3 | {(99.5 + 195 + 200) / 3:.1f} ± {population_std(PPO_FINALS):.1f} |" in markdown
    assert f"| {BEAMRIDER} | SPRIG | 3 | 556.5 ± {population_std(SPRIG_FINALS):.1f} |" in markdown
    with open(out_dir / "results.csv") as file:
        rows = {(row["env_id"], row["method"]): row for row in csv.DictReader(file)}
    assert float(rows[(BEAMRIDER, "SPRIG")]["final_score_mean"]) == pytest.approx(556.5)
    assert float(rows[(BEAMRIDER, "SPRIG")]["final_score_std_ddof0"]) == pytest.approx(population_std(SPRIG_FINALS))
    assert float(rows[(BEAMRIDER, "SPRIG")]["human_normalised_percent"]) == pytest.approx(
        (556.5 - 363.9) / (16926.5 - 363.9) * 100
    )
    assert rows[("MyGameNoFrameskip-v4", "my_variant")]["human_normalised_percent"] == ""
    assert rows[(BEAMRIDER, "PPO")]["num_seeds"] == "3"


def test_the_default_command_imports_neither_torch_nor_the_emulator(results_dir, tmp_path):
    """Plotting results needs no training stack: it runs where only the logs were copied to."""
    check = (
        "import sys, plot_results; plot_results.main(sys.argv[1:]); "
        "print(sorted({'torch', 'gymnasium', 'ale_py'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", check, str(results_dir), "--out-dir", str(tmp_path)], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def paper_reference_figure(tmp_path, last_steps):
    """The figure of PPO runs (two seeds) on each {env id: last step}, 100 episodes each, with the paper's points."""
    for env_id, last_step in last_steps.items():
        for seed in (1, 2):
            steps = [last_step * (i + 1) // 100 for i in range(100)]
            write_run(tmp_path / env_id, env_id, "ppo_atari", seed, [500.0 + i for i in range(100)], steps)
    return plot_results.curves_figure(plot_results.aggregate(plot_results.load_runs(tmp_path), 50), paper_reference=True)


def markers(axis):
    """{label: (x, y)} of the lines drawn without a line: the paper's points."""
    return {
        line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
        for line in axis.lines
        if line.get_linestyle() == "None"
    }


def test_with_the_paper_reference_a_short_run_keeps_its_own_steps_and_the_papers_later_points_sit_at_the_edge(tmp_path):
    figure = paper_reference_figure(tmp_path, {BEAMRIDER: 51_200, "PongNoFrameskip-v4": 20_000})
    beamrider, pong = figure.axes
    assert beamrider.get_xlim() == pytest.approx((0.0, 51.2)) and beamrider.get_xlabel() == "environment steps (thousands)"
    assert pong.get_xlim() == pytest.approx((0.0, 20.0)) and markers(pong) == {}  # its own range; no paper there
    # Within 51,200 steps lies only the paper's step 0; its later points are summarised by its last one, at the edge.
    assert markers(beamrider) == {
        "SPRIG paper (read off Fig. 2)": ([0.0], [335.0]),
        "PPO paper (read off Fig. 2)": ([0.0], [470.0]),
        "SPRIG paper beyond these steps (its last point, at the edge)": ([51.2], [850.0]),
        "PPO paper beyond these steps (its last point, at the edge)": ([51.2], [677.0]),
    }
    assert sorted(text.get_text() for text in beamrider.texts) == [
        "PPO paper: 677 at 10M steps",
        "SPRIG paper: 850 at 10M steps",
    ]
    plot_results.pyplot().close(figure)


def test_with_the_paper_reference_a_full_length_run_shows_every_point_of_the_paper(tmp_path):
    figure = paper_reference_figure(tmp_path, {BEAMRIDER: 10_000_000})
    [axis] = figure.axes
    assert axis.get_xlim() == pytest.approx((0.0, 10.0)) and axis.get_xlabel() == "environment steps (millions)"
    assert markers(axis) == {
        "SPRIG paper (read off Fig. 2)": ([0.0, 1.0, 2.0, 3.0, 5.0, 6.4, 10.0], [335, 595, 690, 790, 733, 607, 850]),
        "PPO paper (read off Fig. 2)": ([0.0, 1.0, 2.0, 5.0, 10.0], [470, 520, 537, 590, 677]),
    }
    assert len(axis.texts) == 0
    plot_results.pyplot().close(figure)


def test_runs_paused_just_past_1m_steps_show_the_papers_1m_points_and_the_legend_covers_nothing(tmp_path):
    # 100 episodes up to 995,000 steps (a run paused at 1,000,448 ends its last episode a little before)
    figure = paper_reference_figure(tmp_path, {BEAMRIDER: 995_000})
    [axis] = figure.axes
    assert axis.get_xlim() == pytest.approx((0.0, 1.0))
    found = markers(axis)
    assert found["SPRIG paper (read off Fig. 2)"] == ([0.0, 1.0], [335.0, 595.0])
    assert found["PPO paper (read off Fig. 2)"] == ([0.0, 1.0], [470.0, 520.0])
    assert found["SPRIG paper beyond these steps (its last point, at the edge)"] == ([1.0], [850.0])
    figure.canvas.draw()
    legend, panel = axis.get_legend().get_window_extent(), axis.get_window_extent()
    assert legend.y1 <= panel.y0  # below the panel: not over the curves, the markers or "SPRIG paper: 850 at 10M steps"
    plot_results.pyplot().close(figure)


def test_a_seed_whose_entropy_fell_below_the_threshold_is_flagged_collapsed_in_the_table_and_one_line(tmp_path):
    steps = [1000, 2000, 3000, 4000]
    returns = [300.0, 400.0, 10.0, 0.0]
    write_run(
        tmp_path, BEAMRIDER, "sprig-pg", 1, returns, steps, entropy=[(1024, 2.1), (2048, 0.04), (3072, 0.2), (4096, 0.3)]
    )
    write_run(tmp_path, BEAMRIDER, "sprig-pg", 2, returns, steps, entropy=[(1024, 2.1), (2048, 0.05), (4096, 0.06)])
    write_run(tmp_path, BEAMRIDER, "sprig-pg", 3, returns, steps, entropy=[(1024, 2.1), (4096, 0.0)])
    write_run(tmp_path, BEAMRIDER, "ppo_atari", 1, returns, steps, entropy=[(1024, 2.1), (4096, 1.9)])
    write_run(tmp_path, BEAMRIDER, "sprig_ppo_atari", 1, returns, steps)  # logged no entropy
    result = run_cli(tmp_path)
    assert result.returncode == 0, result.stderr
    # Seed 1 fell below 0.05 at 2048 and rose again: still flagged. Seed 2 never went below exactly 0.05.
    line = "collapsed policies (losses/entropy fell below 0.05): SPRIG-pg on BeamRiderNoFrameskip-v4 seeds 1, 3"
    assert line in result.stdout
    lines = (tmp_path / "results.md").read_text().splitlines()
    rows = {line.split(" | ")[1]: line for line in lines if line.startswith(f"| {BEAMRIDER} |")}  # not the aggregate
    assert rows["SPRIG-pg"].endswith(
        "| seed 1: COLLAPSED at step 2,048, now 0.30; seed 2: 0.06; seed 3: COLLAPSED at step 4,096, now 0.00 |"
    )
    assert rows["PPO"].endswith("| seed 1: 1.90 |") and rows["SPRIG"].endswith("| seed 1: n/a |")
    with open(tmp_path / "results.csv") as file:
        csv_rows = {row["method"]: row for row in csv.DictReader(file)}
    assert csv_rows["SPRIG-pg"]["seed_collapsed"] == "1 0 1"
    assert [float(value) for value in csv_rows["SPRIG-pg"]["seed_last_entropies"].split()] == pytest.approx([0.3, 0.06, 0.0])


def test_with_no_collapsed_seed_the_line_says_none(tmp_path):
    write_run(tmp_path, BEAMRIDER, "ppo_atari", 1, [1.0, 2.0], [1000, 2000], entropy=[(2048, 1.5)])
    result = run_cli(tmp_path)
    assert "collapsed policies (losses/entropy fell below 0.05): none" in result.stdout


def test_cli_writes_next_to_the_runs_by_default(tmp_path):
    write_run(tmp_path, "PongNoFrameskip-v4", "ppo_atari", 1, [-21.0, -20.0], [1000, 2000], [(2048, 140.0)])
    result = run_cli(tmp_path)
    assert result.returncode == 0, result.stderr
    assert all((tmp_path / name).stat().st_size > 0 for name in ["figure2.png", "figure2.pdf", "results.md", "results.csv"])


@pytest.mark.parametrize("kind", ["empty", "missing"])
def test_a_directory_without_runs_is_one_clear_line_and_exit_code_1(tmp_path, kind):
    directory = tmp_path / "results"
    if kind == "empty":
        (directory / "cleanrl").mkdir(parents=True)
    result = run_cli(directory)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
    assert str(directory) in result.stderr
    assert not (directory / "figure2.png").exists()


def test_iqm_of_eight_seeds_is_the_mean_of_the_middle_four():
    # Sorted: 1, 2 | 3, 5, 7, 8 | 10, 100: a quarter (2 seeds) is cut from each end, then (3 + 5 + 7 + 8) / 4.
    estimate = plot_results.iqm_estimate([3.0, 10.0, 1.0, 7.0, 2.0, 8.0, 100.0, 5.0])
    assert estimate.value == 5.75
    assert estimate.low <= 5.75 <= estimate.high


def test_with_fewer_than_four_seeds_the_iqm_trims_nothing_and_is_the_mean(results_dir):
    results = results_by_method(results_dir)
    assert results[(BEAMRIDER, "SPRIG")].iqm.value == pytest.approx(556.5)
    assert results[(BEAMRIDER, "SPRIG")].human_normalised_iqm.value == pytest.approx((556.5 - 363.9) / (16926.5 - 363.9) * 100)
    assert results[("MyGameNoFrameskip-v4", "my_variant")].human_normalised_iqm is None


def numpy_stratified_bootstrap_interval(scores, statistic):
    """The percentile CI of a stratified bootstrap written out with numpy: per resample, each task's (column's) seeds
    drawn with replacement from numpy's global RNG seeded with BOOTSTRAP_SEED, as rliable's StratifiedBootstrap."""
    np.random.seed(plot_results.BOOTSTRAP_SEED)
    num_seeds, num_tasks = scores.shape
    resampled = []
    for _ in range(plot_results.BOOTSTRAP_REPS):
        indices = np.random.choice(num_seeds, (num_seeds, num_tasks), replace=True)
        resampled.append(statistic(scores[indices, np.arange(num_tasks)]))
    return np.percentile(np.array(resampled), [2.5, 97.5], axis=0)


# arch (under rliable) takes the percentile interval with np.percentile at 100 * (1 - 0.95) / 2 = 2.500000000000002,
# not 2.5 (the upper one is 97.5 exactly): the lower bound's interpolation weight between two neighbouring resampled
# statistics moves by 2e-17 * (reps - 1), about 2e-14 of their gap at 1000 reps. So the bounds agree to the last bits,
# but not promised bit for bit (here they came out equal). arch draws nothing else from numpy's global RNG (checked:
# after a call the RNG state is the one after exactly `reps` np.random.choice draws), so any difference in the
# resampling would show far above this tolerance.
BOOTSTRAP_TOLERANCE = 1e-9


def test_iqm_interval_equals_a_numpy_stratified_bootstrap_with_the_same_seed(monkeypatch):
    monkeypatch.setattr(plot_results, "BOOTSTRAP_REPS", 1000)  # fewer resamples for a faster test, the same bootstrap
    seed_scores = [412.5, 380.25, 1020.0, 501.75, 99.5, 640.0, 733.125, 455.0]
    estimate = plot_results.iqm_estimate(seed_scores)
    low, high = numpy_stratified_bootstrap_interval(
        np.array(seed_scores)[:, None], lambda scores: scipy.stats.trim_mean(scores, 0.25, axis=None)
    )
    assert (estimate.low, estimate.high) == (
        pytest.approx(low, rel=BOOTSTRAP_TOLERANCE),
        pytest.approx(high, rel=BOOTSTRAP_TOLERANCE),
    )
    assert estimate.low < estimate.value < estimate.high and estimate.low < estimate.high


def test_aggregate_iqm_interval_resamples_seeds_within_each_game_as_a_numpy_stratified_bootstrap(monkeypatch):
    monkeypatch.setattr(plot_results, "BOOTSTRAP_REPS", 1000)
    scores = {
        BEAMRIDER: [2020.0, 3676.0, 800.5, 9000.0, 5332.0, 1500.0],
        "PongNoFrameskip-v4": [-20.0, -3.5, 14.0, 21.0, -10.25, 0.0],
        "BreakoutNoFrameskip-v4": [2.0, 5.5, 40.0, 12.0, 3.0, 30.5],
    }
    results = [plot_results.Result(env_id, "SPRIG", seed_scores=s, seeds=[1, 2, 3, 4, 5, 6]) for env_id, s in scores.items()]
    [aggregate], notes = plot_results.aggregate_scores(results)
    assert notes == [] and aggregate.num_seeds == 6 and aggregate.env_ids == sorted(scores)
    normalised = np.array(
        [[plot_results.human_normalised(env_id, x) / 100 for x in scores[env_id]] for env_id in sorted(scores)]
    ).T
    low, high = numpy_stratified_bootstrap_interval(
        normalised, lambda resampled: 100 * scipy.stats.trim_mean(resampled, 0.25, axis=None)
    )
    assert aggregate.iqm.low == pytest.approx(low, rel=BOOTSTRAP_TOLERANCE)
    assert aggregate.iqm.high == pytest.approx(high, rel=BOOTSTRAP_TOLERANCE)
    assert aggregate.iqm.value == pytest.approx(100 * scipy.stats.trim_mean(normalised, 0.25, axis=None))


def test_iqm_band_is_the_iqm_over_seeds_at_each_step_with_a_numpy_stratified_bootstrap_interval(monkeypatch):
    monkeypatch.setattr(plot_results, "BOOTSTRAP_REPS", 500)
    # 4 seeds x 3 grid steps; with 4 seeds one is cut from each end: the IQM is the mean of the middle two.
    per_seed = np.array([[1.0, 10.0, 5.0], [2.0, 20.0, 5.0], [3.0, 30.0, 5.0], [100.0, 40.0, 5.0]])
    iqm, low, high = plot_results.iqm_band(per_seed)
    assert iqm.tolist() == [2.5, 25.0, 5.0]
    expected_low, expected_high = numpy_stratified_bootstrap_interval(
        per_seed, lambda resampled: scipy.stats.trim_mean(resampled, 0.25, axis=0)
    )
    assert low == pytest.approx(expected_low, rel=BOOTSTRAP_TOLERANCE)
    assert high == pytest.approx(expected_high, rel=BOOTSTRAP_TOLERANCE)
    assert low[2] == high[2] == 5.0  # every seed equal at the last step


def test_when_all_seeds_score_the_same_the_interval_collapses_to_that_score():
    assert plot_results.iqm_estimate([42.5] * 5) == plot_results.Estimate(42.5, 42.5, 42.5)
    results = [plot_results.Result(BEAMRIDER, "PPO", seed_scores=[363.9 + 16562.6 / 2] * 4, seeds=[1, 2, 3, 4])]
    [aggregate], _ = plot_results.aggregate_scores(results)
    for estimate in (aggregate.iqm, aggregate.mean):
        assert (estimate.value, estimate.low, estimate.high) == pytest.approx((50.0, 50.0, 50.0))
    assert (aggregate.optimality_gap.low, aggregate.optimality_gap.high) == pytest.approx((50.0, 50.0))


def test_probability_of_improvement_is_one_when_every_seed_beats_every_ppo_seed_and_one_half_for_equal_scores(monkeypatch):
    monkeypatch.setattr(plot_results, "BOOTSTRAP_REPS", 500)
    ppo = plot_results.Result(BEAMRIDER, "PPO", seed_scores=[500.0, 600.0, 700.0], seeds=[1, 2, 3])
    better = plot_results.Result(BEAMRIDER, "SPRIG", seed_scores=[800.0, 900.0, 1000.0, 1100.0], seeds=[1, 2, 3, 4])
    same = plot_results.Result(BEAMRIDER, "SPRIG-pg", seed_scores=[500.0, 600.0, 700.0], seeds=[1, 2, 3])
    aggregates, _ = plot_results.aggregate_scores([ppo, better, same])
    by_method = {aggregate.method: aggregate for aggregate in aggregates}
    assert by_method["PPO"].improvement_over_ppo is None
    assert by_method["SPRIG"].improvement_over_ppo == plot_results.Estimate(1.0, 1.0, 1.0)  # so does every resample
    assert by_method["SPRIG-pg"].improvement_over_ppo.value == 0.5
    assert by_method["SPRIG-pg"].improvement_over_ppo.low < 0.5 < by_method["SPRIG-pg"].improvement_over_ppo.high
    # Without PPO there is nothing to compare with.
    [alone], _ = plot_results.aggregate_scores([better])
    assert alone.improvement_over_ppo is None


def test_probability_of_improvement_counts_pairs_by_hand_and_equals_rliables_mann_whitney_form_exactly():
    # One game: X = 3, 5, 5 and Y = 1, 5. Pairs X > Y: (3,1), (5,1), (5,1); ties: (5,5) twice -> (3 + 1) / 6.
    # A second game where X always loses: (3 + 1) / 6 and 0 average to 1/3.
    x, y = np.array([[3.0, 0.0], [5.0, 0.0], [5.0, 0.0]]), np.array([[1.0, 1.0], [5.0, 2.0]])
    assert plot_results.probability_of_improvement(x[:, :1], y[:, :1]) == 4 / 6
    assert plot_results.probability_of_improvement(x, y) == pytest.approx(1 / 3)
    _, metrics = plot_results.load_rliable()
    rng = np.random.default_rng(0)
    for num_x, num_y, num_games in [(3, 3, 1), (5, 2, 1), (4, 6, 3), (10, 10, 5)]:
        for _ in range(20):
            scores_x = rng.integers(0, 6, (num_x, num_games)).astype(float) * 100.0  # few values: many ties
            scores_y = rng.integers(0, 6, (num_y, num_games)).astype(float) * 100.0
            expected = metrics.probability_of_improvement(scores_x, scores_y)
            assert plot_results.probability_of_improvement(scores_x, scores_y) == expected
        assert plot_results.probability_of_improvement(scores_x, scores_x) == 0.5  # rliable's rule for equal scores


def test_aggregate_is_over_seeds_and_games_with_the_first_k_seeds_of_each_game_and_says_so():
    # Human-normalised scores (1.0 = human): BeamRider 0.1, 0.2, 0.3; Pong 0.0, 0.5, 1.5 and a 4th seed at 10.0 that
    # is left out (3 seeds on BeamRider). Mean: 2.6 / 6; IQM of 6 cuts one from each end: (0.1 + 0.2 + 0.3 + 0.5) / 4;
    # optimality gap: 1 - (0.1 + 0.2 + 0.3 + 0.0 + 0.5 + 1.0) / 6 = 0.65; median of the games' means: (0.2 + 2/3) / 2.
    # A game without reference scores is left out, and a note says so.
    beamrider = [363.9 + 16562.6 * fraction for fraction in (0.1, 0.2, 0.3)]
    pong = [-20.7 + 35.3 * fraction for fraction in (0.0, 0.5, 1.5, 10.0)]
    results = [
        plot_results.Result(BEAMRIDER, "SPRIG", seed_scores=beamrider, seeds=[1, 2, 3]),
        plot_results.Result("PongNoFrameskip-v4", "SPRIG", seed_scores=pong, seeds=[1, 2, 3, 4]),
        plot_results.Result("MyGameNoFrameskip-v4", "SPRIG", seed_scores=[1e9], seeds=[1]),
    ]
    [aggregate], notes = plot_results.aggregate_scores(results)
    assert aggregate.env_ids == [BEAMRIDER, "PongNoFrameskip-v4"] and aggregate.num_seeds == 3
    assert aggregate.mean.value == pytest.approx(260 / 6)
    assert aggregate.iqm.value == pytest.approx(27.5)
    assert aggregate.optimality_gap.value == pytest.approx(65.0)
    assert aggregate.median.value == pytest.approx(100 * (0.2 + 2.0 / 3) / 2)  # of the games' means over their 3 seeds
    assert notes == [
        "note: MyGameNoFrameskip-v4: no human reference scores (not an Atari-57 game): reported raw, left out of the "
        "aggregates",
        f"note: SPRIG has 3 seeds on {BEAMRIDER}, 4 seeds on PongNoFrameskip-v4; its aggregate uses the first 3 seeds "
        f"(in seed order) of each game",
    ]


# Human-normalised final scores (1.0 = human) of SPRIG's three seeds on four of the Atari-5 games; every episode of a
# seed scores the same, so its final score is known (to float32, as TensorBoard stores it).
KNOWN_SCORES = {
    "BattleZoneNoFrameskip-v4": [0.05, 0.10, 0.60],
    "DoubleDunkNoFrameskip-v4": [-0.5, 0.25, 2.0],
    "NameThisGameNoFrameskip-v4": [0.3, 0.4, 0.5],
    "QbertNoFrameskip-v4": [1.2, 0.9, 0.02],
}


def test_median_over_games_and_performance_profile_equal_a_direct_numpy_computation(tmp_path, monkeypatch):
    monkeypatch.setattr(plot_results, "BOOTSTRAP_REPS", 500)
    for env_id, fractions in KNOWN_SCORES.items():
        random_score, human_score = plot_results.RANDOM_AND_HUMAN_SCORES[plot_results.game_name(env_id)]
        for seed, fraction in enumerate(fractions, start=1):
            score = random_score + fraction * (human_score - random_score)
            write_run(tmp_path, env_id, "sprig_ppo_atari", seed, [score] * 3, [1000, 2000, 3000])
    [aggregate], notes = plot_results.aggregate_scores(plot_results.final_scores(plot_results.load_runs(tmp_path)))
    scores = np.array([KNOWN_SCORES[env_id] for env_id in sorted(KNOWN_SCORES)]).T  # (seeds, games)
    assert notes == [] and aggregate.env_ids == sorted(KNOWN_SCORES) and aggregate.scores == pytest.approx(scores, abs=1e-5)

    # The median over games of each game's mean over seeds: the means are 0.25, 0.5833, 0.4, 0.7067 -> (0.4 + 0.5833) / 2.
    assert (
        aggregate.median.value
        == pytest.approx(100 * np.median(scores.mean(axis=0)))
        == pytest.approx(100 * 2.95 / 6, abs=1e-3)
    )
    low, high = numpy_stratified_bootstrap_interval(
        aggregate.scores, lambda resampled: 100 * np.median(resampled.mean(axis=0))
    )
    assert aggregate.median.low == pytest.approx(low, rel=BOOTSTRAP_TOLERANCE)
    assert aggregate.median.high == pytest.approx(high, rel=BOOTSTRAP_TOLERANCE)

    # The profile: at each tau, the fraction of the 12 runs scoring above it; taus evenly spaced from just below the
    # lowest score (-50%) to the highest (200%).
    taus, profiles = plot_results.performance_profiles([aggregate])
    fractions, lows, highs = profiles["SPRIG"]
    assert len(taus) == plot_results.PROFILE_POINTS and np.allclose(np.diff(taus), 250 / (plot_results.PROFILE_POINTS - 2))
    assert (taus[1], taus[-1]) == pytest.approx((-50.0, 200.0), abs=1e-3)
    assert fractions == pytest.approx([np.mean(100 * aggregate.scores > tau) for tau in taus])
    assert fractions[0] == 1.0 and fractions[-1] == 0.0
    assert fractions[np.flatnonzero(taus > -49.99)[0]] == pytest.approx(11 / 12)  # all but DoubleDunk's -50%
    assert fractions[np.flatnonzero(taus > 100.01)[0]] == pytest.approx(2 / 12)  # above human: 120% and 200%
    expected_lows, expected_highs = numpy_stratified_bootstrap_interval(
        aggregate.scores, lambda resampled: (100 * resampled[..., None] > taus).mean(axis=(0, 1))
    )
    assert lows == pytest.approx(expected_lows) and highs == pytest.approx(expected_highs)
    assert np.all(lows <= fractions) and np.all(fractions <= highs)


def test_cli_writes_aggregate_png_and_csv_and_appends_the_aggregate_table_with_p_of_improvement(results_dir, tmp_path):
    result = run_cli(results_dir, "--out-dir", tmp_path, "--grid-points", "20", "--band", "iqm")
    assert result.returncode == 0, result.stderr
    for name in [
        "figure2.png",
        "aggregate.png",
        "performance_profile.png",
        "results.md",
        "results.csv",
        "results_aggregate.csv",
    ]:
        assert f"wrote {tmp_path / name}" in result.stdout
    for name in ["aggregate.png", "performance_profile.png"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "results_aggregate.csv") as file:
        rows = {row["method"]: row for row in csv.DictReader(file)}
    assert list(rows) == ["PPO", "SPRIG"]  # my_variant ran only a game without reference scores
    # 3 seeds each: the IQM is the mean. Every SPRIG seed (569.5, 700, 400) beats every PPO seed (99.5, 195, 200).
    assert float(rows["SPRIG"]["iqm_percent"]) == pytest.approx((556.5 - 363.9) / (16926.5 - 363.9) * 100)
    assert rows["SPRIG"]["num_seeds_per_game"] == "3" and rows["SPRIG"]["env_ids"] == BEAMRIDER
    assert [float(rows["SPRIG"][f"probability_of_improvement_over_ppo{s}"]) for s in ("", "_ci_low", "_ci_high")] == [1, 1, 1]
    assert rows["PPO"]["probability_of_improvement_over_ppo"] == ""
    markdown = (tmp_path / "results.md").read_text()
    assert "## Aggregate over the games with human reference scores" in markdown
    [sprig_row] = [line for line in markdown.splitlines() if line.startswith(f"| SPRIG | {BEAMRIDER} | 3 | 3 (1 x 3) |")]
    assert f" | {(556.5 - 363.9) / (16926.5 - 363.9) * 100:.1f} [" in sprig_row and sprig_row.endswith("| 1.00 [1.00, 1.00] |")
    assert markdown.rstrip().splitlines()[-1] == (
        "note: MyGameNoFrameskip-v4: no human reference scores (not an Atari-57 game): reported raw, left out of the "
        "aggregates"
    )
    with open(tmp_path / "results.csv") as file:
        rows = {(row["env_id"], row["method"]): row for row in csv.DictReader(file)}
    assert float(rows[(BEAMRIDER, "PPO")]["final_score_iqm"]) == pytest.approx((99.5 + 195.0 + 200.0) / 3)
    low, high = (float(rows[(BEAMRIDER, "PPO")][f"final_score_iqm_ci_{end}"]) for end in ("low", "high"))
    assert 99.5 <= low < high <= 200.0
    assert rows[("MyGameNoFrameskip-v4", "my_variant")]["human_normalised_iqm_percent"] == ""


def test_without_reference_scores_there_is_no_aggregate_and_a_note_says_so(tmp_path):
    write_run(tmp_path, "MyGameNoFrameskip-v4", "my_variant", 1, [5.0, 7.0], [100, 200])
    result = run_cli(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "note: no game has human reference scores" in result.stderr
    assert not (tmp_path / "aggregate.png").exists() and not (tmp_path / "results_aggregate.csv").exists()
    assert not (tmp_path / "performance_profile.png").exists()
    assert "Aggregate" not in (tmp_path / "results.md").read_text()


# A sweep of alpha-coop (benchmark.sh --sweep "alpha-coop=0.0 0.5 1.0" --seeds "1 2"): 3 values x 2 seeds. Each run
# logs 15 iterations of sprig/attention_cost; the last 10% rounded up is the last 2, whose mean is the seed's cost
# (the first 13 are 9.0, so a mean over all iterations, or the last one alone, would give other numbers).
# value: {seed: (episodic returns, last two attention costs)}
SWEEP = {
    "0.0": {1: ([-1000.0] * 20 + [100.0] * 100, [5e-4, 7e-4]), 2: ([300.0] * 50, [8e-4, 8e-4])},
    "0.5": {1: ([float(i) for i in range(150)], [2e-4, 4e-4]), 2: ([200.5] * 100, [3e-4, 3e-4])},
    "1.0": {1: ([40.0] * 10, [1e-4, 1e-4]), 2: ([60.0] * 10, [3e-4, 3e-4])},
}


def write_sweep_run(root, value, seed, returns, last_costs, flag="alpha-coop", env_id=BEAMRIDER):
    """A swept run as benchmark.sh --sweep names it, with one sprig/attention_cost point per iteration (a second
    event file in the run directory, as a run that was restarted would have)."""
    steps = [1000 * (i + 1) for i in range(len(returns))]
    run_dir = write_run(root, env_id, f"sprig_{flag}={value}", seed, returns, steps)
    writer = SummaryWriter(str(run_dir))
    for iteration, cost in enumerate([9.0] * 13 + last_costs):
        writer.add_scalar("sprig/attention_cost", cost, 2048 * (iteration + 1), walltime=START_WALL_TIME + iteration)
    writer.close()


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """The sweep's runs, one run of a second sweep (attn-cost-coef), and plain PPO and SPRIG runs to be left out."""
    root = tmp_path_factory.mktemp("sweep_results") / "cleanrl"
    for value, seeds in SWEEP.items():
        for seed, (returns, last_costs) in seeds.items():
            write_sweep_run(root, value, seed, returns, last_costs)
    write_sweep_run(root, "1e-3", 1, [10.0, 20.0], [0.001, 0.003], flag="attn-cost-coef")
    write_run(root, BEAMRIDER, "sprig_ppo_atari", 1, [5000.0, 5000.0], [1000, 2000])
    write_run(root, BEAMRIDER, "ppo_atari", 1, [7000.0, 7000.0], [1000, 2000])
    return root


def test_swept_run_name_shows_the_flag_and_value_in_the_method():
    assert plot_results.parse_run_name(f"{BEAMRIDER}__sprig_alpha-coop=0.3__2__17") == (
        BEAMRIDER,
        "SPRIG alpha-coop=0.3",
        2,
        17,
    )
    assert plot_results.parse_sweep("sprig_attn-cost-coef=1e-4") == ("attn-cost-coef", "1e-4")
    assert plot_results.parse_sweep("sprig_ppo_atari") is None and plot_results.parse_sweep("sprig_alpha-coop=high") is None


def test_tradeoff_is_each_values_mean_and_population_std_over_seeds_of_final_return_and_attention_cost(sweep_dir):
    points = plot_results.tradeoff_points(sweep_dir)
    assert [(p.flag, p.env_id, p.value, p.seeds) for p in points] == [
        ("alpha-coop", BEAMRIDER, 0.0, [1, 2]),
        ("alpha-coop", BEAMRIDER, 0.5, [1, 2]),
        ("alpha-coop", BEAMRIDER, 1.0, [1, 2]),
        ("attn-cost-coef", BEAMRIDER, 0.001, [1]),
    ]
    points = points[:3]
    # Final returns: (100, 300), (99.5, 200.5), (40, 60). Costs: (6e-4, 8e-4), (3e-4, 3e-4), (1e-4, 3e-4).
    assert [p.returns for p in points] == [[100.0, 300.0], [99.5, 200.5], [40.0, 60.0]]
    assert [p.return_mean for p in points] == pytest.approx([200.0, 150.0, 50.0])
    assert [p.return_std for p in points] == pytest.approx([100.0, 50.5, 10.0])
    assert [p.costs for p in points] == [pytest.approx(c, rel=1e-6) for c in ([6e-4, 8e-4], [3e-4, 3e-4], [1e-4, 3e-4])]
    assert [p.cost_mean for p in points] == pytest.approx([7e-4, 3e-4, 2e-4], rel=1e-6)
    assert [p.cost_std for p in points] == pytest.approx([1e-4, 0.0, 1e-4], rel=1e-5, abs=1e-10)


def test_tradeoff_cli_writes_a_png_and_a_table_per_swept_flag(sweep_dir, tmp_path):
    out_dir = tmp_path / "figures"
    result = run_cli("tradeoff", sweep_dir, "--out-dir", out_dir)
    assert result.returncode == 0, result.stderr
    for flag in ["alpha-coop", "attn-cost-coef"]:
        assert (out_dir / f"tradeoff_{flag}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote {out_dir / f'tradeoff_{flag}.md'}" in result.stdout
    table = (out_dir / "tradeoff_alpha-coop.md").read_text()
    assert "ddof=0" in table and "last 10% of iterations" in table
    assert f"| {BEAMRIDER} | 0.0 | 2 | 200.0 ± 100.0 | 0.000700 ± 0.000100 | 100.0, 300.0 | 0.0006, 0.0008 |" in table
    assert f"| {BEAMRIDER} | 0.5 | 2 | 150.0 ± 50.5 | 0.000300 ± 0.000000 | 99.5, 200.5 | 0.0003, 0.0003 |" in table
    assert f"| {BEAMRIDER} | 1.0 | 2 | 50.0 ± 10.0 | 0.000200 ± 0.000100 | 40.0, 60.0 | 0.0001, 0.0003 |" in table
    assert (
        f"| {BEAMRIDER} | 1e-3 | 1 | 15.0 ± 0.0 | 0.00200 ± 0.00000 |" in (out_dir / "tradeoff_attn-cost-coef.md").read_text()
    )


def test_tradeoff_without_swept_runs_is_one_clear_line_and_exit_code_1(results_dir, tmp_path):
    result = run_cli("tradeoff", results_dir, "--out-dir", tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]  # besides load_runs' warnings
    assert errors == [
        f"error: no swept runs (exp_name sprig_FLAG=VALUE, from benchmark.sh --sweep) with finished episodes under "
        f"{results_dir}"
    ]
    assert list(tmp_path.iterdir()) == []


def test_every_method_keeps_one_colour_of_its_own_across_figures():
    colors = plot_results.method_colors(["PPO", "SPRIG", "SPRIG-pg", "sprig_no-value-term", "my_variant"])
    assert colors["PPO"] == "tab:blue" and colors["SPRIG"] == "tab:orange" and colors["SPRIG-pg"] == "tab:red"
    assert len(set(colors.values())) == 5


def test_milestones_compare_each_method_on_the_scaled_network_with_its_twin_on_todays_network():
    joint, scaled_joint, scaled = "PPO on SPRIG's network", "PPO on SPRIG's network, scaled features", "SPRIG, scaled features"
    pairs = plot_results.improvement_pairs(["PPO", "SPRIG", joint, scaled_joint, scaled])
    assert (scaled_joint, joint) in pairs and (scaled, "SPRIG") in pairs  # the comparisons that decide the default
    assert ("SPRIG", scaled) not in pairs and (scaled_joint, "PPO") in pairs and ("SPRIG", joint) in pairs
    assert len(pairs) == len(set(pairs)) == 4 + 2 + 2  # over PPO; SPRIG over the two others; the two twins
    assert (scaled_joint, joint) not in plot_results.improvement_pairs(["PPO", scaled_joint])  # no twin, no pair


def test_milestones_compare_the_seeds_at_each_step_with_their_health_and_the_pairs_of_methods(tmp_path):
    # PPO seeds score 100, 200, 300 and SPRIG's 401, 402, 403 in every episode (one each 1000 steps up to 300k); PPO on
    # SPRIG's network scores 50, with two seeds that stop at 200k. Entropy 2.0 up to 240k steps, then 1.0; clipfrac 0.1.
    for exp_name, seeds, last_step, score in [
        ("ppo_atari", (1, 2, 3), 300_000, lambda seed: 100.0 * seed),
        ("sprig_ppo_atari", (1, 2, 3), 300_000, lambda seed: 400.0 + seed),
        ("sprig-joint", (1, 2), 200_000, lambda seed: 50.0),
    ]:
        for seed in seeds:
            steps = list(range(1000, last_step + 1, 1000))
            run_dir = write_run(tmp_path, BEAMRIDER, exp_name, seed, [score(seed)] * len(steps), steps)
            writer = SummaryWriter(str(run_dir))
            for step in steps:
                writer.add_scalar("losses/entropy", 2.0 if step <= 240_000 else 1.0, step)
                writer.add_scalar("losses/clipfrac", 0.1, step)
            writer.close()
    result = run_cli(tmp_path, "--at-steps", 100_000, 250_000, "--out-dir", tmp_path / "out", "--grid-points", 20)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "out" / "milestones.md").read_text()
    at_100k, at_250k = text.split("## At 100,000 steps")[1].split("## At 250,000 steps")
    assert f"| {BEAMRIDER} | PPO | 1, 2, 3 | 100.0, 200.0, 300.0 | 200.0 [" in at_100k
    assert f"| {BEAMRIDER} | SPRIG | 1, 2, 3 | 401.0, 402.0, 403.0 | 402.0 [401.0, 403.0] | 2.000, 2.000, 2.000 |" in at_100k
    assert (
        f"| {BEAMRIDER} | PPO on SPRIG's network | 1, 2 | 50.0, 50.0 | 50.0 [50.0, 50.0] | 2.000, 2.000 | 0.100, 0.100 |"
        in at_100k
    )
    assert f"| {BEAMRIDER} | P(SPRIG > PPO) | 1.00 [1.00, 1.00] |" in at_100k
    assert f"| {BEAMRIDER} | P(PPO on SPRIG's network > PPO) | 0.00 [0.00, 0.00] |" in at_100k
    assert f"| {BEAMRIDER} | P(SPRIG > PPO on SPRIG's network) | 1.00 [1.00, 1.00] |" in at_100k
    # At 250k the two seeds that stopped at 200k are left out, and said to be; the last 10 iterations' entropy is 1.0.
    assert "PPO on SPRIG's network |" not in at_250k and "2 of 2 seeds have not reached 250,000" in at_250k
    assert f"| {BEAMRIDER} | SPRIG | 1, 2, 3 | 401.0, 402.0, 403.0 | 402.0 [401.0, 403.0] | 1.000, 1.000, 1.000 |" in at_250k
