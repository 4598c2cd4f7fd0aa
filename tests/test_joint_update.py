"""--update joint, the architecture control: SPRIG's network trained as plain PPO, one optimiser over all of it."""

import dataclasses
import math
import os

import torch
from helpers import TINY_RUN, read_scalars, run_dirs, run_script
from sprig_ppo_atari import Agent, Args, joint_step, ppo_loss
from test_sprig_update import make_minibatch, snapshot


def joint_setup(seed=0):
    torch.manual_seed(seed)
    agent = Agent(num_actions=9)
    args = Args(update="joint", learning_rate=1e-3)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    return agent, args, optimizer, make_minibatch(agent)


def test_one_joint_step_is_a_hand_written_adam_step_on_ppo_loss_over_all_parameters():
    agent, args, optimizer, mb = joint_setup()
    parameters = list(agent.parameters())
    before = snapshot(parameters)

    # By hand: the gradient of ppo_loss over theta and phi from one forward pass, clipped to max_grad_norm as one
    # vector, then Adam's first step: m = (1 - b1) g, v = (1 - b2) g^2, p -= lr * m_hat / (sqrt(v_hat) + eps).
    features, _ = agent.perception(mb["obs"] / 255.0)
    _, logprob, entropy, value = agent.follow(features, mb["actions"])
    loss, _ = ppo_loss(logprob, entropy, value, mb, args)
    gradients = torch.autograd.grad(loss, parameters)
    norm = math.sqrt(sum((g.double() ** 2).sum().item() for g in gradients))
    assert norm > args.max_grad_norm  # so the clip takes part in what is checked
    scale = args.max_grad_norm / (norm + 1e-6)
    beta1, beta2, eps, lr = 0.9, 0.999, 1e-5, args.learning_rate
    expected = []
    for p, g in zip(before, gradients):
        g = g * scale
        m_hat, v_hat = (1 - beta1) * g / (1 - beta1), (1 - beta2) * g**2 / (1 - beta2)
        expected.append(p - lr * m_hat / (v_hat.sqrt() + eps))

    stats = joint_step(agent, optimizer, mb, args)
    assert abs(stats["grad_norm"].item() - norm) < 1e-4 * norm
    for name, (p, e) in zip([n for n, _ in agent.named_parameters()], zip(parameters, expected)):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-7, msg=name)
    moved = [not torch.equal(b, p) for b, p in zip(before, parameters)]
    assert all(moved)  # theta and phi alike: one optimiser over both players


def test_the_attention_cost_is_reported_but_moves_no_parameter_under_joint():
    results = []
    for attn_cost_coef in (0.0, 1e3):
        agent, args, optimizer, mb = joint_setup()
        stats = joint_step(agent, optimizer, mb, dataclasses.replace(args, attn_cost_coef=attn_cost_coef))
        results.append((snapshot(agent.parameters()), stats))
    (zero, zero_stats), (large, large_stats) = results
    assert all(torch.equal(a, b) for a, b in zip(zero, large))  # C_theta is not in the loss
    assert zero_stats["attention_cost"].item() == 0.0 and large_stats["attention_cost"].item() > 0
    for k in (1, 2, 3):  # the masks start near 0.5 (b_m = 0) and are reported as the stackelberg update reports them
        assert 0 < large_stats[f"mask_mean_block{k}"].item() < 1
    assert all(not value.requires_grad and value.dim() == 0 for value in large_stats.values())


def test_a_joint_run_logs_the_cost_and_masks_and_saves_its_one_optimiser_under_its_own_name(tmp_path):
    run_script(
        "sprig_ppo_atari.py", *TINY_RUN, "--total-timesteps", 128, "--checkpoint-every", 1, "--update", "joint", cwd=tmp_path
    )
    (run_dir,) = run_dirs(tmp_path)
    checkpoint = torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True)
    assert "joint_optimizer" in checkpoint and "leader_optimizer" not in checkpoint and "follower_optimizer" not in checkpoint
    assert len(checkpoint["joint_optimizer"]["param_groups"][0]["params"]) == len(list(Agent(9).parameters()))
    logged = {tag for tag in read_scalars(run_dir) if tag.startswith("sprig/")}
    expected = {"sprig/attention_cost", "sprig/grad_norm", "sprig/joint_learning_rate", "sprig/feature_norm"}
    expected |= {f"sprig/mask_mean_block{k}" for k in (1, 2, 3)}
    assert logged == expected  # no leader or follower stage to report
