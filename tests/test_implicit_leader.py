"""--leader-gradient implicit: the leader's total derivative through the follower's best response.

d u_L/d theta = d u_L/d theta|phi + (d2 u_F/d theta d phi) w,  (H + lambda I) w = d u_L/d phi,  H = -d2 u_F/d phi2
"""

import copy
import dataclasses

import pytest
import torch
import torch.nn as nn
from sprig_ppo_atari import (
    Agent,
    Args,
    conjugate_gradient,
    follower_utilities,
    implicit_term,
    layer_init,
    leader_step,
    ppo_loss,
)
from test_sprig_update import make_minibatch, snapshot, unchanged


def flat(tensors):
    return torch.cat([t.flatten() for t in tensors])


def test_on_a_quadratic_game_the_implicit_gradient_is_the_derivative_through_the_best_response():
    """u_F = -1/2 phi^T Q phi + phi^T B theta has the best response phi*(theta) = Q^-1 B theta in closed form, so
    d/d theta of u_L(theta, phi*(theta)) is autograd through it. Two follower blocks, which u_F does not couple."""
    generator = torch.Generator().manual_seed(0)
    randn = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    blocks = [randn(3, 3), randn(2, 2)]
    q = torch.block_diag(*[block @ block.T + 3 * torch.eye(len(block), dtype=torch.float64) for block in blocks])
    b, c, d, target = randn(5, 4), randn(5), randn(5, 4), randn(4)
    theta = randn(4).requires_grad_()

    def u_follower(theta, phi):
        return -0.5 * phi @ q @ phi + phi @ b @ theta

    def u_leader(theta, phi):
        return -0.5 * ((theta - target) ** 2).sum() + c @ phi + phi @ d @ theta + (phi**2).sum() * theta.sum()

    best_response = torch.linalg.solve(q, b @ theta)  # phi*(theta), with theta's graph
    (expected,) = torch.autograd.grad(u_leader(theta, best_response), theta)

    phi = [best_response[:3].detach().requires_grad_(), best_response[3:].detach().requires_grad_()]
    u_leader_here = u_leader(theta, torch.cat(phi))
    direct = torch.autograd.grad(u_leader_here, theta, retain_graph=True)[0]
    leader_phi_gradient = torch.autograd.grad(u_leader_here, phi)
    args = Args(implicit_damping=0.0, implicit_cg_iters=10)
    fixed, live = u_follower(theta.detach(), torch.cat(phi)), u_follower(theta, torch.cat(phi))
    (implicit,), residual = implicit_term(leader_phi_gradient, fixed, live, [theta], [[phi[0]], [phi[1]]], args)
    assert torch.allclose(direct + implicit, expected, rtol=1e-10, atol=1e-10)
    assert residual < 1e-10
    assert not torch.allclose(direct, expected)  # the game is one where anticipating the follower matters


def tiny_heads(seed=0):
    """An Agent whose follower heads read 8 features instead of 512: 3 * 9 + 9 = 36 follower parameters."""
    torch.manual_seed(seed)
    agent = Agent(num_actions=3)
    agent.actor, agent.critic = layer_init(nn.Linear(8, 3), std=0.5), layer_init(nn.Linear(8, 1), std=1)
    agent.double()
    features = torch.randn(64, 8, dtype=torch.float64)
    with torch.no_grad():
        actions, logprobs, _, values = agent.follow(features)
    advantages = torch.randn(64, dtype=torch.float64)
    mb = {
        "actions": actions,
        "logprobs": logprobs + 0.3 * torch.randn(64, dtype=torch.float64),  # ratios away from 1: some clipped
        "advantages": (advantages - advantages.mean()) / advantages.std(),
        "returns": values.flatten() + torch.randn(64, dtype=torch.float64),
        "values": values.flatten(),
    }
    return agent, features, mb


@pytest.mark.parametrize("head", ["actor", "critic"])
def test_on_real_heads_conjugate_gradient_matches_a_dense_solve_of_the_damped_hessian(head):
    agent, features, mb = tiny_heads()
    args = Args(clip_coef=0.2)
    block = list(getattr(agent, head).parameters())
    shapes = [p.shape for p in block]

    def dense_utility(flat_parameters):  # u_F as a function of this head's parameters only, for the dense Hessian
        parameters = [v.view(s) for v, s in zip(torch.split(flat_parameters, [s.numel() for s in shapes]), shapes)]
        output = torch.func.functional_call(getattr(agent, head), dict(zip(["weight", "bias"], parameters)), features)
        other = agent.critic(features) if head == "actor" else agent.actor(features)
        logits, value = (output, other) if head == "actor" else (other, output)
        distribution = torch.distributions.Categorical(logits=logits)
        return -ppo_loss(distribution.log_prob(mb["actions"]), distribution.entropy(), value, mb, args)[0]

    hessian = -torch.autograd.functional.hessian(dense_utility, flat(block).detach())
    damping = max(0.0, -torch.linalg.eigvalsh(hessian)[0].item()) + 0.5  # positive definite once damped
    b = torch.randn(hessian.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    expected = torch.linalg.solve(hessian + damping * torch.eye(len(b), dtype=torch.float64), b)

    u_follower, _ = follower_utilities(agent, features, mb, args)
    gradient = flat(torch.autograd.grad(u_follower, block, create_graph=True))

    def product(v):
        return -flat(torch.autograd.grad(gradient @ v, block, retain_graph=True)) + damping * v

    w, residual = conjugate_gradient(product, b, iterations=200)
    assert torch.allclose(w, expected, rtol=1e-6, atol=1e-8)
    assert residual < 1e-8


def test_conjugate_gradient_stops_at_negative_curvature_instead_of_diverging():
    hessian = torch.diag(torch.tensor([2.0, -1.0], dtype=torch.float64))
    b = torch.tensor([1.0, 1.0], dtype=torch.float64)
    w, residual = conjugate_gradient(lambda v: hessian @ v, b, iterations=10)
    # First direction b: curvature b^T H b = 2 - 1 = 1 > 0, step |b|^2 / 1 = 2, so w = 2b and the residual is
    # b - 2 H b = (-3, 3), 3 times |b|. The next direction, (-3, 3) + 9 b = (6, 12), has curvature 72 - 144 < 0: stop.
    assert torch.allclose(w, b * (2 / 1))
    assert residual.item() == pytest.approx(3.0)


@pytest.fixture
def setup():
    torch.manual_seed(0)
    agent = Agent(num_actions=9)
    args = Args(learning_rate=1e-3, leader_gradient="implicit")
    optimizer = torch.optim.Adam(agent.leader_parameters(), lr=args.learning_rate, eps=1e-5)
    return agent, args, optimizer, make_minibatch(agent)


@pytest.mark.parametrize("leader_utility", ["follower", "pg"])
def test_the_implicit_leader_step_moves_theta_and_gives_phi_no_gradient(setup, leader_utility):
    agent, args, optimizer, mb = setup
    theta, phi = agent.leader_parameters(), agent.follower_parameters()
    theta_before, phi_before = snapshot(theta), snapshot(phi)
    stats = leader_step(agent, optimizer, mb, dataclasses.replace(args, leader_utility=leader_utility))
    assert unchanged(phi_before, phi) and all(p.grad is None for p in phi)
    assert not unchanged(theta_before, theta)
    if leader_utility == "follower":  # (with pg, the policy block's first CG direction may have negative curvature: w = 0)
        assert stats["implicit_grad_norm"] > 0 and stats["implicit_direct_ratio"] > 0


@pytest.mark.parametrize("max_ratio", [1.0, 0.01])
def test_the_implicit_step_is_the_direct_one_plus_the_reported_implicit_term_within_its_bound(setup, max_ratio):
    agent, args, optimizer, mb = setup
    args = dataclasses.replace(args, max_grad_norm=1e9, implicit_max_ratio=max_ratio)  # .grad left unclipped
    direct_agent = copy.deepcopy(agent)
    direct_optimizer = torch.optim.Adam(direct_agent.leader_parameters(), lr=args.learning_rate, eps=1e-5)
    leader_step(direct_agent, direct_optimizer, mb, dataclasses.replace(args, leader_gradient="direct"))
    stats = leader_step(agent, optimizer, mb, args)
    difference = [p.grad - q.grad for p, q in zip(agent.leader_parameters(), direct_agent.leader_parameters())]
    direct_norm = torch.nn.utils.get_total_norm([q.grad for q in direct_agent.leader_parameters()])
    implicit_norm, ratio = stats["implicit_grad_norm"], stats["implicit_direct_ratio"]
    assert ratio.item() == pytest.approx((implicit_norm / direct_norm).item(), rel=1e-4)
    # .grad = -(direct + scale * implicit), the implicit part scaled to at most max_ratio times the direct norm
    expected = min(implicit_norm.item(), max_ratio * direct_norm.item())
    assert torch.nn.utils.get_total_norm(difference).item() == pytest.approx(expected, rel=1e-3)


def test_with_the_implicit_part_bounded_to_zero_the_step_is_the_direct_one(setup):
    agent, args, optimizer, mb = setup
    direct_agent = copy.deepcopy(agent)
    direct_optimizer = torch.optim.Adam(direct_agent.leader_parameters(), lr=args.learning_rate, eps=1e-5)
    leader_step(agent, optimizer, mb, dataclasses.replace(args, implicit_max_ratio=0.0))
    leader_step(direct_agent, direct_optimizer, mb, dataclasses.replace(args, leader_gradient="direct"))
    for implicit, direct in zip(agent.leader_parameters(), direct_agent.leader_parameters()):
        assert torch.allclose(implicit, direct, rtol=1e-5, atol=1e-7)


def test_the_implicit_part_is_bounded_by_the_max_ratio_times_the_direct_part(setup):
    agent, args, optimizer, mb = setup
    args = dataclasses.replace(args, implicit_max_ratio=0.25, max_grad_norm=1e9)
    direct_agent = copy.deepcopy(agent)
    direct_optimizer = torch.optim.Adam(direct_agent.leader_parameters(), lr=args.learning_rate, eps=1e-5)
    stats = leader_step(agent, optimizer, mb, args)
    direct_stats = leader_step(direct_agent, direct_optimizer, mb, dataclasses.replace(args, leader_gradient="direct"))
    # |direct + s * implicit| <= |direct| + min(|implicit|, 0.25 |direct|)
    bound = direct_stats["leader_grad_norm"] * 1.25
    assert stats["leader_grad_norm"] <= bound * (1 + 1e-5)
    assert stats["implicit_direct_ratio"] > 0.25  # the bound was active here
