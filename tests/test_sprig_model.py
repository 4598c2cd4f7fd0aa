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


def test_gated_attention_equals_the_per_position_formula():
    """y_i = x_i + m_i * sum_j softmax_j(q_i . k_j / sqrt(C/8)) v_j, written position by position, with q, k, v and
    m from the paper's 1x1 convolutions."""
    torch.manual_seed(2)
    attention = GatedSelfAttention(16)
    x = torch.randn(2, 16, 3, 4, dtype=torch.float64)
    attention.double()
    y, mask = attention(x)
    q, k, v = (conv1x1(layer, x).flatten(2) for layer in (attention.query, attention.key, attention.value))
    m = torch.sigmoid(conv1x1(attention.mask, x)).flatten(2)
    expected = x.flatten(2).clone()
    for b in range(2):
        for i in range(12):
            scores = torch.stack([q[b, :, i] @ k[b, :, j] for j in range(12)]) / math.sqrt(2)
            weights = torch.softmax(scores, dim=0)
            expected[b, :, i] += m[b, 0, i] * sum(weights[j] * v[b, :, j] for j in range(12))
    assert torch.allclose(y.flatten(2), expected, atol=1e-12)
    assert torch.allclose(mask.flatten(2), m, atol=1e-12)


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


def test_agent_acts_and_values_from_perception_features():
    torch.manual_seed(4)
    agent = Agent(num_actions=9)
    action, logprob, entropy, value = agent.get_action_and_value(observations(seed=4))
    assert action.shape == logprob.shape == entropy.shape == (5,) and value.shape == (5, 1)
    assert (action < 9).all() and entropy.max() <= math.log(9) + 1e-6
    assert torch.allclose(agent.get_value(observations(seed=4)), value)
