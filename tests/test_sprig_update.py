"""SPRIG's two-stage update: who moves what, and what each stage optimises."""

import copy
import dataclasses

import pytest
import torch
from sprig_ppo_atari import PPO_LOSS_STATS, Agent, Args, attention_cost, follower_step, leader_step, ppo_loss, to_host


def make_minibatch(agent, batch=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 256, (batch, 4, 84, 84), generator=generator).float()
    with torch.no_grad():
        actions, logprobs, _, values = agent.get_action_and_value(obs)
    advantages = torch.randn(batch, generator=generator)
    return {
        "obs": obs,
        "actions": actions,
        "logprobs": logprobs,
        "advantages": (advantages - advantages.mean()) / advantages.std(),
        "returns": values.flatten() + torch.randn(batch, generator=generator),
        "values": values.flatten(),
    }


@pytest.fixture
def setup():
    torch.manual_seed(0)
    agent = Agent(num_actions=9)
    args = Args(learning_rate=1e-3)
    leader_optimizer = torch.optim.Adam(agent.leader_parameters(), lr=args.learning_rate, eps=1e-5)
    follower_optimizer = torch.optim.Adam(agent.follower_parameters(), lr=args.learning_rate, eps=1e-5)
    return agent, args, leader_optimizer, follower_optimizer, make_minibatch(agent)


def snapshot(parameters):
    return [p.detach().clone() for p in parameters]


def unchanged(before, parameters):
    return all(torch.equal(b, p) for b, p in zip(before, parameters, strict=True))


def test_every_parameter_belongs_to_exactly_one_player():
    agent = Agent(num_actions=6)
    leader = {id(p) for p in agent.leader_parameters()}
    follower = {id(p) for p in agent.follower_parameters()}
    assert leader and follower and not leader & follower
    assert leader | follower == {id(p) for p in agent.parameters()}
    assert follower == {id(p) for p in [*agent.actor.parameters(), *agent.critic.parameters()]}


@pytest.mark.parametrize("leader_utility", ["follower", "pg"])
@pytest.mark.parametrize("stage", ["leader", "follower"])
def test_each_stage_changes_its_own_player_and_leaves_the_other_bit_identical(setup, stage, leader_utility):
    agent, args, leader_optimizer, follower_optimizer, mb = setup
    args = dataclasses.replace(args, leader_utility=leader_utility)
    theta, phi = agent.leader_parameters(), agent.follower_parameters()
    own, other = (theta, phi) if stage == "leader" else (phi, theta)
    own_before, other_before = snapshot(own), snapshot(other)
    if stage == "leader":
        leader_step(agent, leader_optimizer, mb, args)
    else:
        follower_step(agent, follower_optimizer, mb, args)
    assert unchanged(other_before, other)
    assert not unchanged(own_before, own)
    assert all(p.grad is None for p in other)  # no gradient even reached the other player


def test_with_full_cooperation_weight_the_leader_step_lowers_the_attention_cost(setup):
    agent, args, leader_optimizer, _, mb = setup
    args = dataclasses.replace(args, alpha_coop=1.0)

    def cost():
        with torch.no_grad():
            return attention_cost(agent.perception(mb["obs"] / 255.0)[1], args.attn_cost_coef).item()

    before = cost()
    for _ in range(3):
        leader_step(agent, leader_optimizer, mb, args)
    assert cost() < before


def test_with_zero_cooperation_weight_the_cost_does_not_move_theta(setup):
    """alpha_coop = 0: only u_policy moves theta, so the step is the same whatever lambda_c is."""
    agent, args, _, _, mb = setup
    results = []
    for attn_cost_coef in (0.0, 10.0):
        copy_agent = copy.deepcopy(agent)
        optimizer = torch.optim.Adam(copy_agent.leader_parameters(), lr=args.learning_rate, eps=1e-5)
        leader_step(copy_agent, optimizer, mb, dataclasses.replace(args, alpha_coop=0.0, attn_cost_coef=attn_cost_coef))
        results.append(snapshot(copy_agent.leader_parameters()))
    assert unchanged(results[0], results[1])
    assert not unchanged(results[0], agent.leader_parameters())


def written_leader_terms(agent, mb, args):
    """u_L and its terms as docs/design.md ('The leader's utility') writes them, term by term, independently of the
    script's attention_cost, follow and ppo_loss: {attention_cost, u_policy, u_follower, leader_utility}."""
    features, masks = agent.perception(mb["obs"] / 255.0)
    cost = args.attn_cost_coef * sum(mask.flatten(1).sum(1) / mask[0].numel() for mask in masks).mean()
    logits = agent.actor(features)
    log_pi = torch.log_softmax(logits, dim=-1)
    logprob = log_pi.gather(1, mb["actions"][:, None])[:, 0]
    u_policy = (logprob * mb["advantages"]).mean()
    if args.leader_utility == "pg":
        u_follower = u_policy
    else:
        ratio = torch.exp(logprob - mb["logprobs"])
        clipped_ratio = ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)
        l_clip = torch.minimum(ratio * mb["advantages"], clipped_ratio * mb["advantages"]).mean()
        value = agent.critic(features)[:, 0]
        value_clipped = mb["values"] + (value - mb["values"]).clamp(-args.clip_coef, args.clip_coef)
        l_value = 0.5 * torch.maximum((value - mb["returns"]) ** 2, (value_clipped - mb["returns"]) ** 2).mean()
        entropy = -(log_pi.exp() * log_pi).sum(-1).mean()
        u_follower = l_clip - args.vf_coef * l_value + args.ent_coef * entropy
    leader_utility = args.alpha_coop * -cost + (1 - args.alpha_coop) * u_follower
    return {"attention_cost": cost, "u_policy": u_policy, "u_follower": u_follower, "leader_utility": leader_utility}


def away_from_the_rollout(mb):
    """The minibatch with its old log-probabilities and old values moved away from the current ones, so that the ratio
    and value clipping are both active on part of it."""
    generator = torch.Generator().manual_seed(1)
    mb = mb | {"logprobs": mb["logprobs"] + 0.3 * torch.randn(len(mb["logprobs"]), generator=generator)}
    return mb | {"values": mb["values"] + 0.2 * torch.randn(len(mb["values"]), generator=generator)}


@pytest.mark.parametrize("leader_utility", ["follower", "pg"])
def test_leader_step_reports_the_written_cost_policy_term_and_utilities(setup, leader_utility):
    """Under pg, u_F is the policy term and u_L = 0.7 * -C_theta + 0.3 * u_policy, Algorithm 1's combination."""
    agent, args, leader_optimizer, _, mb = setup
    args, mb = dataclasses.replace(args, leader_utility=leader_utility, attn_cost_coef=0.1), away_from_the_rollout(mb)
    with torch.no_grad():
        written = written_leader_terms(agent, mb, args)
    stats = leader_step(agent, leader_optimizer, mb, args)
    for name, value in written.items():
        assert stats[name].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-7), name  # float32 sums


@pytest.mark.parametrize("leader_utility", ["follower", "pg"])
def test_leader_gradient_is_autograd_of_the_written_utility_and_reaches_theta_only(setup, leader_utility):
    agent, args, leader_optimizer, _, mb = setup
    # No gradient clipping, so the gradient left in .grad is the raw one.
    args = dataclasses.replace(args, leader_utility=leader_utility, max_grad_norm=1e9, attn_cost_coef=0.1)
    mb = away_from_the_rollout(mb)
    reference = copy.deepcopy(agent)
    expected = torch.autograd.grad(written_leader_terms(reference, mb, args)["leader_utility"], reference.leader_parameters())
    with torch.no_grad():
        ratio = torch.exp(reference.get_action_and_value(mb["obs"], mb["actions"])[1] - mb["logprobs"])
    assert 0 < ((ratio - 1).abs() > args.clip_coef).float().mean() < 1  # the clip is active on part of the batch

    leader_step(agent, leader_optimizer, mb, args)
    for parameter, gradient in zip(agent.leader_parameters(), expected, strict=True):
        torch.testing.assert_close(parameter.grad, -gradient, rtol=1e-4, atol=1e-7)  # the step descends -u_L
    assert all(p.grad is None for p in agent.follower_parameters())


def test_the_two_leader_utilities_move_theta_differently(setup):
    agent, args, _, _, mb = setup
    moved = {}
    for leader_utility in ("follower", "pg"):
        copy_agent = copy.deepcopy(agent)
        optimizer = torch.optim.Adam(copy_agent.leader_parameters(), lr=args.learning_rate, eps=1e-5)
        leader_step(copy_agent, optimizer, mb, dataclasses.replace(args, leader_utility=leader_utility))
        moved[leader_utility] = snapshot(copy_agent.leader_parameters())
    assert not unchanged(moved["follower"], moved["pg"])


def test_both_stages_report_detached_scalar_tensors_under_the_names_the_loop_logs(setup):
    agent, args, leader_optimizer, follower_optimizer, mb = setup
    stats = leader_step(agent, leader_optimizer, mb, args)
    stats |= follower_step(agent, follower_optimizer, mb, args)
    _, ppo_stats = ppo_loss(*agent.get_action_and_value(mb["obs"], mb["actions"])[1:], mb, args)
    assert set(PPO_LOSS_STATS) == set(ppo_stats)  # logged as losses/*; the rest as sprig/*
    sprig = {"attention_cost", "u_policy", "u_follower", "leader_utility", "leader_grad_norm", "follower_grad_norm"}
    sprig |= {"feature_norm"}
    assert set(stats) == set(ppo_stats) | sprig | {"mask_mean_block1", "mask_mean_block2", "mask_mean_block3"}
    assert all(value.dim() == 0 and not value.requires_grad for value in stats.values())
    host = to_host([stats, stats])  # one copy for the iteration: a float64 value per minibatch
    assert all(values.tolist() == [stats[name].item()] * 2 for name, values in host.items())
