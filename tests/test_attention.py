"""Seeing what perception attends to: the overlay renderer, the TensorBoard image, `plot_results.py attention`."""

import re

import matplotlib
import numpy as np
import ppo_atari
import pytest
import sprig_ppo_atari
import torch
from helpers import TINY_RUN, run_dirs, run_script
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


@pytest.fixture(scope="module")
def untrained_masks():
    torch.manual_seed(0)
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        _, masks = sprig_ppo_atari.Agent(num_actions=9).perception(obs / 255.0)
    return obs[:, -1], masks


def test_overlays_have_one_84x84_rgb_picture_per_frame_and_block(untrained_masks):
    frames, masks = untrained_masks
    assert all((0 <= mask).all() and (mask <= 1).all() for mask in masks)
    overlays = sprig_ppo_atari.attention_overlays(frames, masks)
    assert overlays.shape == (3, 3, 84, 84, 3) and overlays.dtype == np.uint8


def test_overlay_colour_is_the_colour_map_of_the_mask_blended_with_the_frame():
    frames = torch.full((1, 84, 84), 255, dtype=torch.uint8)  # a white frame
    masks = [torch.zeros(1, 1, 20, 20), torch.ones(1, 1, 9, 9), torch.full((1, 1, 7, 7), 0.5)]
    overlays = sprig_ppo_atari.attention_overlays(frames, masks)
    inferno = matplotlib.colormaps["inferno"]
    for block, value in enumerate((0.0, 1.0, 0.5)):
        expected = np.round((0.4 + 0.6 * np.array(inferno(value)[:3])) * 255)
        assert np.abs(overlays[0, block].reshape(-1, 3) - expected).max() <= 1


def test_attention_figure_is_a_grid_image_of_the_expected_size(untrained_masks):
    frames, masks = untrained_masks
    image = sprig_ppo_atari.attention_figure(frames, masks, steps=[0, 1, 2])
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert image.shape[:2] == (round(2.1 * 3 * 100), 800)  # figsize (8, 2.1 per row) at 100 dpi


def test_training_writes_the_attention_image_to_tensorboard(tmp_path):
    run_script("sprig_ppo_atari.py", *TINY_RUN, "--total-timesteps", "256", "--log-attention-every", "2", cwd=tmp_path)
    (run_dir,) = run_dirs(tmp_path)
    accumulator = EventAccumulator(run_dir, size_guidance={"images": 0})
    accumulator.Reload()
    assert "sprig/attention" in accumulator.Tags()["images"]
    assert [event.step for event in accumulator.Images("sprig/attention")] == [256]


def test_attention_command_plays_an_episode_and_writes_grid_gif_and_summary(tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "sprig_ppo_atari.cleanrl_model"
    torch.save(sprig_ppo_atari.Agent(num_actions=9).state_dict(), model)
    flags = ["--model", model, "--out-dir", tmp_path / "out", "--max-steps", "30", "--grid-steps", "3"]
    result = run_script("plot_results.py", "attention", *flags, cwd=tmp_path)
    steps = int(re.search(r"(\d+) agent steps, return", result.stdout)[1])
    assert 30 - 8 <= steps <= 30  # the time limit counts the up-to-30 no-op frames at reset too (7.5 agent steps)
    grid = Image.open(tmp_path / "out" / "attention_grid.png")
    assert grid.size == (800, round(2.1 * 3 * 100))
    gif = Image.open(tmp_path / "out" / "attention.gif")
    assert gif.n_frames == (steps + 1) // 2 and gif.size == (4 * 84, 84)  # every 2nd step; frame | block 1 | 2 | 3
    summary = (tmp_path / "out" / "attention_summary.md").read_text()
    assert summary.count("| (") == 3


def test_attention_command_refuses_a_ppo_model_a_missing_file_and_a_nature_model(tmp_path):
    model = tmp_path / "ppo_atari.cleanrl_model"
    torch.save(ppo_atari.Agent(num_actions=9).state_dict(), model)
    result = run_script("plot_results.py", "attention", "--model", model, cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"error: --model: {model} is not a model of this version of sprig_ppo_atari.py (not its Agent)"
    )
    result = run_script("plot_results.py", "attention", "--model", tmp_path / "missing", cwd=tmp_path, check=False)
    assert (
        result.returncode == 1
        and result.stderr.strip().splitlines()[-1] == f"error: --model: no such file: {tmp_path / 'missing'}"
    )
    nature = tmp_path / "nature.cleanrl_model"
    torch.save(sprig_ppo_atari.Agent(num_actions=9, perception="nature").state_dict(), nature)
    result = run_script("plot_results.py", "attention", "--model", nature, cwd=tmp_path, check=False)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == (
        f"error: --model: {nature} is a --perception nature agent: its CNN has no attention masks to draw"
    )
    assert not (tmp_path / "attention").exists()
