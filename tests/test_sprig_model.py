"""SPRIG's perception leader: shapes, masks, the attention itself, and the attention cost C_theta."""

import math

import pytest
import torch
import torch.nn.functional as F
from sprig_ppo_atari import Agent, GatedSelfAttention, Perception, attention_cost


def observations(batch=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 4, 84, 84), generator=generator).float()


def test_perception_blocks_and_features_have_the_spec_shapes():
    torch.manual_seed(0)
    perception = Perception()
    x, shapes = observations() / 255.0, []
    for conv, norm, attention in zip(perception.convs, perception.norms, perception.attentions):
        x, mask = attention(torch.relu(norm(conv(x))))
        shapes.append((tuple(x.shape), tuple(mask.shape)))
    assert shapes == [
        ((5, 32, 20, 20), (5, 1, 20, 20)),
        ((5, 64, 9, 9), (5, 1, 9, 9)),
        ((5, 64, 7, 7), (5, 1, 7, 7)),
    ]
    features, masks = perception(observations() / 255.0)
    assert features.shape == (5, 512) and (features >= 0).all()
    assert [tuple(m.shape) for m in masks] == [shape for _, shape in shapes]


def test_query_and_key_have_c_over_8_channels_and_the_mask_bias_starts_at_zero():
    attention = GatedSelfAttention(64)
    assert attention.query.out_features == attention.key.out_features == 8
    assert attention.value.out_features == 64 and attention.mask.out_features == 1
    assert torch.equal(attention.mask.bias, torch.zeros(1))


def test_masks_lie_strictly_between_zero_and_one():
    torch.manual_seed(1)
    _, masks = Perception()(observations(seed=1) / 255.0)
    for mask in masks:
        assert (mask > 0).all() and (mask < 1).all()


def conv1x1(linear, x):
    """The paper's 1x1 convolution with a linear layer's weights: (B, C, H, W) -> (B, out, H, W)."""
    return F.conv2d(x, linear.weight[:, :, None, None], linear.bias)


def written_gated_attention(attention, x):
    """The spec's gated self-attention with explicit tensors, on x of C channels and N = H*W positions:
    q = W_q x, k = W_k x, v = W_v x (1x1 convolutions), A = softmax(q^T k / sqrt(C/8)) row by row,
    m = sigmoid(W_m x + b_m), y = x + m * (v A^T). Returns (y, m)."""
    batch, channels, height, width = x.shape
    q, k, v = (conv1x1(layer, x).flatten(2) for layer in (attention.query, attention.key, attention.value))  # (B, ., N)
    scores = q.transpose(1, 2) @ k / math.sqrt(channels / 8)  # (B, N, N): q_i . k_j
    exponentials = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    weights = exponentials / exponentials.sum(dim=-1, keepdim=True)  # A, each row sums to 1
    mask = torch.sigmoid(conv1x1(attention.mask, x))  # (B, 1, H, W)
    return x + mask * (v @ weights.transpose(1, 2)).view(batch, channels, height, width), mask


def written_agent(agent, obs):
    """The spec's network written out with the agent's weights: three blocks of Conv2d (strides 4, 2, 1) -> LayerNorm
    over (C, H, W) -> ReLU -> gated self-attention, then Linear 3136 -> 512 + ReLU (f_theta), the policy head and the
    value head. Returns (log pi(. | s) over the actions, V(s), the three masks)."""
    x, masks = obs / 255.0, []
    for conv, norm, attention, stride in zip(
        agent.perception.convs, agent.perception.norms, agent.perception.attentions, (4, 2, 1)
    ):
        x = F.conv2d(x, conv.weight, conv.bias, stride=stride)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        variance = ((x - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) / torch.sqrt(variance + 1e-5) * norm.weight + norm.bias  # LayerNorm's default eps
        x, mask = written_gated_attention(attention, torch.clamp(x, min=0))
        masks.append(mask)
    head = agent.perception.head[1]  # Flatten, Linear, ReLU
    features = torch.clamp(x.flatten(1) @ head.weight.T + head.bias, min=0)
    logits = features @ agent.actor.weight.T + agent.actor.bias
    return logits - torch.logsumexp(logits, dim=-1, keepdim=True), features @ agent.critic.weight.T + agent.critic.bias, masks


def test_attention_cost_is_lambda_times_the_sum_of_mean_masks():
    masks = [torch.full((2, 1, 20, 20), 0.5), torch.ones(2, 1, 9, 9), torch.zeros(2, 1, 7, 7)]
    masks[0][1] = 0.25  # second sample: 0.25 + 1 + 0; first: 0.5 + 1 + 0; batch mean 1.375
    assert attention_cost(masks, 1e-4).item() == pytest.approx(1.375e-4)
    assert attention_cost([torch.ones(3, 1, 5, 5)] * 3, 2.0).item() == pytest.approx(6.0)  # the bound K * lambda_c


def test_attention_cost_is_bounded_and_has_a_gradient_into_the_mask_convs():
    torch.manual_seed(3)
    perception = Perception()
    _, masks = perception(observations(seed=3) / 255.0)
    cost = attention_cost(masks, 1e-4)
    assert 0 <= cost.item() <= 3e-4
    cost.backward()
    for attention in perception.attentions:
        assert attention.mask.weight.grad.abs().sum() > 0
        assert attention.mask.bias.grad.abs() > 0


def test_agent_log_probabilities_entropy_value_and_masks_equal_the_written_out_network():
    torch.manual_seed(4)
    agent = Agent(num_actions=9).double()
    obs, actions = observations(seed=4).double(), torch.tensor([0, 3, 8, 8, 5])
    log_pi, value, masks = written_agent(agent, obs)
    _, logprob, entropy, acted_value = agent.get_action_and_value(obs, actions)
    torch.testing.assert_close(logprob, log_pi[torch.arange(5), actions], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(entropy, -(log_pi.exp() * log_pi).sum(dim=-1), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(acted_value, value, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(agent.get_value(obs), value, rtol=1e-10, atol=1e-12)
    for mask, written_mask in zip(agent.perception(obs / 255.0)[1], masks, strict=True):
        torch.testing.assert_close(mask, written_mask, rtol=1e-10, atol=1e-12)
    sampled, _, _, _ = agent.get_action_and_value(obs)
    assert sampled.shape == (5,) and ((0 <= sampled) & (sampled < 9)).all()
