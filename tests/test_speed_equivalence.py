"""The fast paths compute the same function as the plain ones, within float32 tolerance (rtol 1e-4, atol 1e-5):
channels-last convolutions in ppo_atari.py and the fused scaled-dot-product attention of sprig_ppo_atari.py."""

import copy

import ppo_atari
import pytest
import sprig_ppo_atari
import torch
from test_sprig_model import written_gated_attention
from torch.distributions.categorical import Categorical
from torch.profiler import profile

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def observations(batch=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 4, 84, 84), generator=generator, dtype=torch.uint8)


def test_channels_last_agent_matches_the_plain_nchw_network_in_outputs_losses_and_gradients():
    torch.manual_seed(0)
    agent = ppo_atari.Agent(num_actions=9)
    assert agent.network[0].weight.is_contiguous(memory_format=torch.channels_last)
    plain = copy.deepcopy(agent).to(memory_format=torch.contiguous_format)
    obs = observations()
    actions = torch.randint(0, 9, (16,))

    _, logprob, entropy, value = agent.get_action_and_value(obs, actions)
    hidden = plain.network(obs.float().contiguous() / 255.0)  # NCHW all the way
    probs = Categorical(logits=plain.actor(hidden))
    plain_logprob, plain_entropy, plain_value = probs.log_prob(actions), probs.entropy(), plain.critic(hidden)
    assert torch.allclose(logprob, plain_logprob, **TOLERANCE)
    assert torch.allclose(entropy, plain_entropy, **TOLERANCE)
    assert torch.allclose(value, plain_value, **TOLERANCE)

    loss = -(logprob * torch.linspace(-1, 1, 16)).mean() + value.pow(2).mean() - 0.01 * entropy.mean()
    plain_loss = -(plain_logprob * torch.linspace(-1, 1, 16)).mean() + plain_value.pow(2).mean() - 0.01 * plain_entropy.mean()
    assert torch.allclose(loss, plain_loss, **TOLERANCE)
    loss.backward()
    plain_loss.backward()
    for (name, p), q in zip(agent.named_parameters(), plain.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-3, atol=1e-5), name


@pytest.mark.parametrize("channels, size", [(32, 20), (64, 9), (64, 7)])  # the three blocks: 400, 81 and 49 positions
def test_fused_attention_matches_the_written_out_formula_in_outputs_masks_and_gradients(channels, size):
    torch.manual_seed(1)
    fused = sprig_ppo_atari.GatedSelfAttention(channels)
    plain = copy.deepcopy(fused)
    x = torch.randn(8, channels, size, size)
    y, mask = fused(x)
    y_plain, mask_plain = written_gated_attention(plain, x)
    assert torch.allclose(y, y_plain, **TOLERANCE)
    assert torch.allclose(mask, mask_plain, **TOLERANCE)
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    (y_plain * weights).sum().backward()
    for (name, p), q in zip(fused.named_parameters(), plain.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-3, atol=1e-4), name


def test_attention_runs_in_the_fused_kernel_in_training_and_in_rollouts():
    """The speed of SPRIG on CPU rests on scaled_dot_product_attention choosing its flash kernel, which it does only
    for inputs of one width with unit stride along it; otherwise it silently falls back to building the N x N map."""
    attention = sprig_ppo_atari.GatedSelfAttention(32)
    x = torch.randn(4, 32, 20, 20)
    with profile() as training:
        attention(x)[0].sum().backward()
    with torch.inference_mode(), profile() as rollout:
        attention(x)
    for profiled in (training, rollout):
        names = {event.key for event in profiled.key_averages()}
        assert "aten::_scaled_dot_product_flash_attention_for_cpu" in names
        assert "aten::_scaled_dot_product_attention_math" not in names
    assert "aten::_scaled_dot_product_flash_attention_for_cpu_backward" in {e.key for e in training.key_averages()}
