"""--perception nature, the fourth cell of {network} x {update}: SPRIG's game on ppo_atari.py's own Nature CNN.

The leader theta is ppo_atari.py's encoder (same layers, same initialisation), the follower phi the same two heads; the
CNN has no masks, so C_theta = 0 and the leader maximises (1 - alpha) u_F.
"""

import dataclasses
import os

import ppo_atari
import pytest
import sprig_ppo_atari
import torch
from helpers import TINY_RUN, parse_args_stops_with, read_scalars, run_dirs, run_script
from sprig_ppo_atari import Agent, Args, follower_step, leader_step, load_agent
from test_sprig_update import make_minibatch, snapshot, unchanged


def test_the_nature_leader_is_ppo_atari_s_encoder_with_the_same_initial_values():
    torch.manual_seed(7)
    ppo = ppo_atari.Agent(num_actions=9)
    torch.manual_seed(7)
    sprig = Agent(num_actions=9, perception="nature")
    expected = {f"perception.network.{name}": p for name, p in ppo.network.named_parameters()}
    expected |= {f"{head}.{name}": p for head in ("actor", "critic") for name, p in getattr(ppo, head).named_parameters()}
    got = dict(sprig.named_parameters())
    assert list(got) == list(expected)  # the same layers in the same order: the optimisers see the same parameter list
    for name, parameter in got.items():
        assert parameter.shape == expected[name].shape, name
        assert torch.equal(parameter, expected[name]), name  # drawn in the same order from the same seed
    assert {id(p) for p in sprig.leader_parameters()} == {id(p) for p in sprig.perception.parameters()}


def test_the_nature_leader_has_no_masks_and_gives_ppo_atari_s_policy_and_value():
    torch.manual_seed(7)
    ppo = ppo_atari.Agent(num_actions=9)
    torch.manual_seed(7)
    sprig = Agent(num_actions=9, perception="nature")
    obs = torch.randint(0, 256, (5, 4, 84, 84), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    actions = torch.arange(5)
    features, masks = sprig.perception(obs / 255.0)
    assert masks == [] and features.shape == (5, 512)
    with torch.no_grad():
        for got, want in zip(sprig.get_action_and_value(obs, actions)[1:], ppo.get_action_and_value(obs, actions)[1:]):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.fixture
def nature_setup():
    torch.manual_seed(0)
    agent = Agent(num_actions=9, perception="nature")
    args = Args(perception="nature", learning_rate=1e-3)
    leader_optimizer = torch.optim.Adam(agent.leader_parameters(), lr=args.learning_rate, eps=1e-5)
    follower_optimizer = torch.optim.Adam(agent.follower_parameters(), lr=args.learning_rate, eps=1e-5)
    return agent, args, leader_optimizer, follower_optimizer, make_minibatch(agent)


def test_under_nature_the_leader_moves_only_the_cnn_and_the_follower_only_the_heads(nature_setup):
    agent, args, leader_optimizer, follower_optimizer, mb = nature_setup
    theta, phi = agent.leader_parameters(), agent.follower_parameters()
    theta_before, phi_before = snapshot(theta), snapshot(phi)
    stats = leader_step(agent, leader_optimizer, mb, args)
    assert unchanged(phi_before, phi) and not any(torch.equal(b, p) for b, p in zip(theta_before, theta))
    assert stats["attention_cost"].item() == 0.0  # no masks: C_theta = 0
    assert not any(name.startswith("mask_mean") for name in stats)
    # u_L = alpha * (-0) + (1 - alpha) * u_F, by hand from the logged u_F
    assert stats["leader_utility"].item() == pytest.approx((1 - args.alpha_coop) * stats["u_follower"].item(), rel=1e-6)

    theta_after = snapshot(theta)
    follower_step(agent, follower_optimizer, mb, args)
    assert unchanged(theta_after, theta) and not any(torch.equal(b, p) for b, p in zip(phi_before, phi))


def test_with_adam_alpha_barely_changes_the_nature_leader_s_step(nature_setup):
    # With no cost, alpha only scales the leader's gradient by (1 - alpha); Adam divides each step by the gradient's
    # running scale, so the step changes only where the gradient is near Adam's eps (1e-5).
    agent, args, _, _, mb = nature_setup
    steps = []
    for alpha_coop in (0.0, 0.7):
        torch.manual_seed(0)
        leader = Agent(num_actions=9, perception="nature")
        leader.load_state_dict(agent.state_dict())
        optimizer = torch.optim.Adam(leader.leader_parameters(), lr=args.learning_rate, eps=1e-5)
        before = torch.cat([p.detach().flatten() for p in leader.leader_parameters()])
        leader_step(leader, optimizer, mb, dataclasses.replace(args, alpha_coop=alpha_coop))
        steps.append(torch.cat([p.detach().flatten() for p in leader.leader_parameters()]) - before)
    full, scaled = steps
    assert not torch.equal(scaled, full)  # alpha does reach the step ...
    assert (scaled - full).norm() < 0.05 * full.norm()  # ... but it is the same step but for parameters with tiny gradients
    assert scaled.norm() > 0.5 * full.norm()  # not 0.3x, as a plain gradient step scaled by 1 - alpha would be


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """ppo_atari.py, and sprig_ppo_atari.py --update joint --perception nature, on the same tiny run (checkpointed)."""
    cwd = tmp_path_factory.mktemp("nature")
    flags = [*TINY_RUN, "--total-timesteps", 384, "--checkpoint-every", 1]
    for name in ("ppo", "sprig"):
        (cwd / name).mkdir()
    run_script("ppo_atari.py", *flags, cwd=cwd / "ppo")
    run_script("sprig_ppo_atari.py", *flags, "--update", "joint", "--perception", "nature", cwd=cwd / "sprig")
    return cwd


def test_joint_on_the_nature_cnn_trains_as_ppo_atari_loss_for_loss(tiny_runs):
    # PPO's update on PPO's network: SPRIG's script then is ppo_atari.py, bit for bit, three iterations long.
    (ppo_dir,), (sprig_dir,) = run_dirs(tiny_runs / "ppo"), run_dirs(tiny_runs / "sprig")
    ppo, sprig = read_scalars(ppo_dir), read_scalars(sprig_dir)
    for tag in ("losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl", "losses/clipfrac"):
        assert len(ppo[tag]) == 3 and sprig[tag] == ppo[tag], tag


def test_a_nature_checkpoint_records_it_evaluates_and_resumes_only_as_nature(tiny_runs, tmp_path, monkeypatch):
    (sprig_dir,) = run_dirs(tiny_runs / "sprig")
    checkpoint_path = os.path.join(sprig_dir, "checkpoint.pt")
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    assert checkpoint["args"]["perception"] == "nature"
    agent = load_agent(checkpoint_path)  # --eval-checkpoint's loader builds the CNN from the state's names
    assert isinstance(agent.perception, sprig_ppo_atari.NatureCNN)
    said = parse_args_stops_with(
        "sprig_ppo_atari.py", "--resume", checkpoint_path, "--perception", "attention", cwd=tmp_path, monkeypatch=monkeypatch
    )
    assert said == "error: --resume: these flags differ from the checkpoint: --perception (checkpoint nature, now attention)"
