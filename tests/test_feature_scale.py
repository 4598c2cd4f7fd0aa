"""The scale of the leader's features: SPRIG's network at about ten times the Nature CNN's, --perception attention-scaled
at the CNN's, the feature_norm scalar that every run logs, and feature_scale.py, the tool that measures all of it."""

import dataclasses

import feature_scale
import pytest
import torch
from methods import method_named
from helpers import run_script
from sprig_ppo_atari import Agent, Args, follower_step, joint_step, leader_step
from test_sprig_update import make_minibatch, snapshot, unchanged


@pytest.fixture(scope="module")
def beamrider():
    """128 frames of BeamRider under random play (8 envs x 16 steps), through the scripts' wrappers."""
    play, num_actions = feature_scale.random_play("BeamRiderNoFrameskip-v4", num_envs=8, num_steps=16, seed=1)
    return play, num_actions


def mean_feature_norm(perception, frames, seed=1):
    torch.manual_seed(seed)
    with torch.no_grad():
        features, _ = Agent(9, perception).perception(frames.flatten(0, 1) / 255.0)
    return torch.linalg.vector_norm(features, dim=1).mean().item()


@pytest.mark.parametrize("seed", [1, 2])
def test_on_real_frames_scaled_features_start_within_2x_of_the_cnns_and_todays_at_over_5x(beamrider, seed):
    frames = beamrider[0]["obs"]
    cnn = mean_feature_norm("nature", frames, seed)
    scaled = mean_feature_norm("attention-scaled", frames, seed)
    today = mean_feature_norm("attention", frames, seed)
    assert cnn / 2 < scaled < 2 * cnn, (scaled, cnn)
    assert today > 5 * cnn, (today, cnn)  # the diagnosis: the default network's features start far larger


def test_attention_scaled_differs_from_the_default_network_only_in_the_last_norms_initial_gain():
    torch.manual_seed(3)
    today = Agent(9, "attention").state_dict()
    torch.manual_seed(3)
    scaled = Agent(9, "attention-scaled").state_dict()
    assert list(today) == list(scaled)  # the same components: checkpoints of either load as the other
    differing = [name for name in today if not torch.equal(today[name], scaled[name])]
    assert differing == ["perception.norms.2.weight"]
    assert torch.equal(today["perception.norms.2.weight"], torch.ones(64, 7, 7))  # today's network: gain 1, as before
    assert torch.equal(scaled["perception.norms.2.weight"], torch.full((64, 7, 7), 0.1))


@pytest.mark.parametrize("stage", ["leader", "follower"])
def test_under_attention_scaled_each_stage_moves_its_own_player_only(stage):
    torch.manual_seed(0)
    agent = Agent(9, "attention-scaled")
    args = Args(perception="attention-scaled", learning_rate=1e-3)
    theta, phi = agent.leader_parameters(), agent.follower_parameters()
    own, other = (theta, phi) if stage == "leader" else (phi, theta)
    own_before, other_before = snapshot(own), snapshot(other)
    mb = make_minibatch(agent)
    if stage == "leader":
        leader_step(agent, torch.optim.Adam(theta, lr=args.learning_rate, eps=1e-5), mb, args)
    else:
        follower_step(agent, torch.optim.Adam(phi, lr=args.learning_rate, eps=1e-5), mb, args)
    assert unchanged(other_before, other) and not unchanged(own_before, own)


@pytest.mark.parametrize("update", ["stackelberg", "joint"])
def test_feature_norm_is_the_mean_euclidean_norm_of_the_features_before_the_step(update):
    torch.manual_seed(0)
    agent = Agent(9)
    mb = make_minibatch(agent, batch=6)
    with torch.no_grad():
        features, _ = agent.perception(mb["obs"] / 255.0)
    expected = sum(features[i].pow(2).sum().sqrt() for i in range(6)) / 6  # written out, row by row
    args = Args(update=update)
    if update == "joint":
        stats = joint_step(agent, torch.optim.Adam(agent.parameters(), lr=1e-3), mb, args)
    else:
        stats = leader_step(agent, torch.optim.Adam(agent.leader_parameters(), lr=1e-3), mb, args)
    torch.testing.assert_close(stats["feature_norm"], expected)


def test_the_block_scales_end_in_the_features_the_leader_computes(beamrider):
    x = beamrider[0]["obs"][:2].flatten(0, 1) / 255.0
    for perception in ("attention", "nature"):
        torch.manual_seed(1)
        leader = Agent(9, perception).perception
        with torch.no_grad():
            scales, features = feature_scale.block_scales(leader, x)
            expected, _ = leader(x)
        assert len(scales) == 3 and all(scale > 0 for scale in scales)
        torch.testing.assert_close(features, expected, rtol=0, atol=0)


def test_a_first_update_at_learning_rate_zero_leaves_the_policy_where_it_was(beamrider):
    play, num_actions = beamrider
    for name in ("ppo", "sprig", "sprig-scaled-joint"):
        args = feature_scale.script_args(method_named(name), "cleanrl")
        args = dataclasses.replace(args, num_steps=8, batch_size=64, minibatch_size=32, update_epochs=1, learning_rate=0.0)
        kl, clipfrac = feature_scale.first_update(args, feature_scale.new_agent(args, num_actions, seed=1), play)
        assert kl == pytest.approx(0, abs=1e-9) and clipfrac == 0, name


def test_under_the_default_network_the_first_update_moves_the_policy_further_than_under_the_scaled_one(beamrider):
    """The diagnosis in small: the same frames, the same seed, PPO's update (joint) at CleanRL's settings."""
    play, num_actions = beamrider
    kls = {}
    for name in ("sprig-joint", "sprig-scaled-joint"):
        args = feature_scale.script_args(method_named(name), "cleanrl")
        args = dataclasses.replace(args, num_steps=16, batch_size=128, minibatch_size=32, update_epochs=2)
        kls[name], _ = feature_scale.first_update(args, feature_scale.new_agent(args, num_actions, seed=1), play)
    assert kls["sprig-joint"] > 3 * kls["sprig-scaled-joint"], kls


def test_the_tool_prints_both_tables_for_the_methods_asked(tmp_path):
    result = run_script(
        "feature_scale.py", "--methods", "ppo", "sprig-scaled", "--presets", "cleanrl", cwd=tmp_path, timeout=300
    )
    lines = result.stdout.splitlines()
    assert any(line.startswith("| nature (ppo) |") for line in lines)
    assert any(line.startswith("| attention-scaled (sprig-scaled) |") for line in lines)
    assert [line.split(" | ")[:2] for line in lines if line.startswith(("| ppo |", "| sprig-scaled |"))] == [
        ["| ppo", "cleanrl"],
        ["| sprig-scaled", "cleanrl"],
    ]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_tool_refuses_an_unknown_method_in_one_line(tmp_path):
    result = run_script("feature_scale.py", "--methods", "ppo", "sprig-typo", cwd=tmp_path, check=False)
    assert result.returncode == 1 and result.stderr.strip() == "error: unknown method or preset: sprig-typo"
