"""PPO's loss on one minibatch against values worked out by hand, in both scripts (the `twin` fixture).

Four samples, clip 0.2, rollout log-probabilities 0, so the ratios are exp(newlogprob): 1.0, 1.5, 0.5, 1.05.
"""

import dataclasses
import math

import pytest
import torch

RATIOS = [1.0, 1.5, 0.5, 1.05]


def minibatch():
    return {
        "logprobs": torch.zeros(4),
        "advantages": torch.tensor([1.0, 1.0, -1.0, 2.0]),
        "returns": torch.ones(4),
        "values": torch.zeros(4),
    }


def loss_of(twin, **flags):
    args = dataclasses.replace(twin.Args(), clip_coef=0.2, **flags)
    newlogprob = torch.log(torch.tensor(RATIOS))
    entropy = torch.tensor([1.0, 2.0, 3.0, 2.0])
    newvalue = torch.tensor([[0.5], [2.0], [-0.5], [1.0]])
    return twin.ppo_loss(newlogprob, entropy, newvalue, minibatch(), args)


def test_clipped_surrogate_value_loss_and_entropy_bonus_match_the_hand_computed_loss(twin):
    loss, stats = loss_of(twin)
    # surrogate, max(-A r, -A clip(r)):  -1,  max(-1.5, -1.2) = -1.2,  max(0.5, 0.8) = 0.8,  -2.1   -> mean -0.875
    assert stats["policy_loss"].item() == pytest.approx(-0.875)
    # value, old values 0 clipped to +-0.2, returns 1: max((v - 1)^2, (clip(v) - 1)^2) = 0.64, 1.0, 2.25, 0.64
    assert stats["value_loss"].item() == pytest.approx(0.5 * (0.64 + 1.0 + 2.25 + 0.64) / 4)
    assert stats["entropy"].item() == pytest.approx(2.0)
    # loss = policy - ent_coef * entropy + vf_coef * value, CleanRL's defaults 0.01 and 0.5
    assert loss.item() == pytest.approx(-0.875 - 0.01 * 2.0 + 0.5 * 0.56625)


def test_clipfrac_and_kl_estimates_are_those_of_the_ratios(twin):
    _, stats = loss_of(twin)
    assert stats["clipfrac"].item() == pytest.approx(0.5)  # 1.5 and 0.5 lie outside [0.8, 1.2]
    assert stats["old_approx_kl"].item() == pytest.approx(sum(-math.log(r) for r in RATIOS) / 4)
    assert stats["approx_kl"].item() == pytest.approx(sum(r - 1 - math.log(r) for r in RATIOS) / 4)
    assert all(isinstance(value, torch.Tensor) and value.dim() == 0 for value in stats.values())


def test_without_value_clipping_the_value_loss_is_half_the_mean_squared_error(twin):
    _, stats = loss_of(twin, clip_vloss=False)
    assert stats["value_loss"].item() == pytest.approx(0.5 * (0.25 + 1.0 + 2.25 + 0.0) / 4)


def test_the_loss_gradient_flows_only_through_the_unclipped_samples(twin):
    newlogprob = torch.log(torch.tensor(RATIOS)).requires_grad_()
    args = dataclasses.replace(twin.Args(), clip_coef=0.2, ent_coef=0.0, vf_coef=0.0)
    loss, _ = twin.ppo_loss(newlogprob, torch.zeros(4), torch.zeros(4, 1), minibatch(), args)
    loss.backward()
    # d(-A r / 4)/d log r = -A r / 4 where the unclipped term is the max, 0 where the clipped one is
    assert newlogprob.grad.tolist() == pytest.approx([-0.25, 0.0, 0.0, -2 * 1.05 / 4])
