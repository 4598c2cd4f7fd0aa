"""GAE against advantages worked out by hand (gamma 0.9, lambda 0.8), in both scripts (the `twin` fixture)."""

import pytest
import torch


def gae(twin, rewards, values, dones, next_value, next_done):
    column = lambda xs: torch.tensor(xs, dtype=torch.float64).reshape(-1, 1)  # noqa: E731  (one env)
    return twin.compute_gae(
        column(rewards), column(values), column(dones), torch.tensor([[next_value]]), torch.tensor([next_done]), 0.9, 0.8
    )


def test_gae_does_not_bootstrap_across_a_termination(twin):
    # dones[2] = 1: obs[2] starts a new episode, so step 1 was terminal.
    #   t=2: delta = 3 + 0.9*2.0 - 1.5 = 3.3                  A = 3.3
    #   t=1: delta = 2 - 1.0 = 1.0 (no bootstrap)             A = 1.0
    #   t=0: delta = 1 + 0.9*1.0 - 0.5 = 1.4                  A = 1.4 + 0.72*1.0 = 2.12
    advantages, returns = gae(twin, [1, 2, 3], [0.5, 1.0, 1.5], [0, 0, 1], next_value=2.0, next_done=0)
    assert advantages.flatten().tolist() == pytest.approx([2.12, 1.0, 3.3])
    assert returns.flatten().tolist() == pytest.approx([2.62, 2.0, 4.8])


def test_gae_stops_at_the_end_of_the_rollout_when_the_last_step_was_terminal(twin):
    #   t=2: delta = 1 - 0.3 = 0.7 (next_done)                A = 0.7
    #   t=1: delta = 0 + 0.9*0.3 - 0.2 = 0.07                 A = 0.07 + 0.72*0.7 = 0.574
    #   t=0: delta = 0 + 0.9*0.2 - 0.1 = 0.08                 A = 0.08 + 0.72*0.574 = 0.49328
    advantages, _ = gae(twin, [0, 0, 1], [0.1, 0.2, 0.3], [0, 0, 0], next_value=5.0, next_done=1)
    assert advantages.flatten().tolist() == pytest.approx([0.49328, 0.574, 0.7])


def test_gae_with_a_truncation_bootstraps_through_the_value_folded_into_the_reward(twin):
    # The script adds gamma * V(final_obs) = 0.9 * 4.0 to the reward of a truncated step, then treats it as done.
    #   t=1: delta = 2 + 3.6 - 1.0 = 4.6                      A = 4.6
    #   t=0: delta = 1.4                                      A = 1.4 + 0.72*4.6 = 4.712
    advantages, _ = gae(twin, [1, 2 + 0.9 * 4.0, 3], [0.5, 1.0, 1.5], [0, 0, 1], next_value=2.0, next_done=0)
    assert advantages.flatten().tolist() == pytest.approx([4.712, 4.6, 3.3])


def test_gae_treats_each_env_column_independently(twin):
    rewards = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 1.0]])
    values = torch.tensor([[0.5, 0.1], [1.0, 0.2], [1.5, 0.3]])
    dones = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    advantages, _ = twin.compute_gae(rewards, values, dones, torch.tensor([[2.0, 5.0]]), torch.tensor([0.0, 1.0]), 0.9, 0.8)
    assert advantages[:, 0].tolist() == pytest.approx([2.12, 1.0, 3.3])
    assert advantages[:, 1].tolist() == pytest.approx([0.49328, 0.574, 0.7])
