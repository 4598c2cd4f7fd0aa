"""What main() does around the pieces tested on their own: the order of SPRIG's game, the truncation bootstrap, the
annealed learning rates and --target-kl, in both scripts where both have them.

main() runs in this process for a tiny run or two. Spies wrap the module's functions and call the real ones (main()
looks each up in the module when it calls it); they record what main() handed them, and the expected values are
worked out here from that record.
"""

import copy
import importlib
from typing import NamedTuple

import gymnasium as gym
import pytest
import torch
from helpers import TINY_RUN, run_main

GAMMA = 0.5  # far from 1, so a dropped factor shows
# Two iterations of 2 envs x 64 steps, each 2 epochs x 2 minibatches; episodes cut at 20 agent steps, so that every env
# is truncated a few times in each rollout.
WATCHED_RUN = [*TINY_RUN, "--total-timesteps", 256, "--max-episode-steps", 20, "--no-async-envs"]
WATCHED_RUN += ["--gamma", GAMMA, "--learning-rate", 1e-3]
ITERATIONS, MINIBATCH_UPDATES = 2, 4
STEPS = {"ppo_atari": ["ppo_step"], "sprig_ppo_atari": ["leader_step", "follower_step"]}  # one call per minibatch each


class StepRecord(gym.vector.VectorWrapper):
    """Records what each step of the real vector env returns. On env 0's first truncation it reports a termination
    too, as when a game ends on the very step its time limit runs out: rare in a real game, so set here, where only
    main()'s reading of the two flags is under test."""

    def __init__(self, env):
        super().__init__(env)
        self.steps = []  # (rewards, terminations, truncations, final observations) per step
        self.both_set = False

    def step(self, actions):
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        if truncations[0] and not self.both_set:
            terminations = terminations.copy()
            terminations[0] = self.both_set = True
        final_obs = infos.get("final_obs", [None] * self.num_envs)
        self.steps.append((rewards.copy(), terminations.copy(), truncations.copy(), list(final_obs)))
        return obs, rewards, terminations, truncations, infos


@pytest.fixture(scope="module", params=sorted(STEPS))
def watched(request, tmp_path_factory):
    """The script's main() on WATCHED_RUN, with spies on its vector env, its agent, GAE and each update step."""
    module = importlib.import_module(request.param)
    record = {"agents": [], "gae": [], "calls": []}
    real_make_envs, real_agent, real_gae = module.make_envs, module.Agent, module.compute_gae

    def make_envs(*args, **kwargs):
        record["envs"] = StepRecord(real_make_envs(*args, **kwargs))
        return record["envs"]

    def agent(*args, **kwargs):
        record["agents"].append(real_agent(*args, **kwargs))
        return record["agents"][-1]

    def compute_gae(rewards, *args):
        # before the update: the agent's weights are still those that acted in this rollout
        record["gae"].append((rewards.clone(), copy.deepcopy(record["agents"][0])))
        return real_gae(rewards, *args)

    def spy_on(name):
        real_step = getattr(module, name)

        def step(agent, optimizer, mb, args):
            record["calls"].append((name, optimizer, optimizer.param_groups[0]["lr"], mb))  # the rate it steps at
            return real_step(agent, optimizer, mb, args)

        return step

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "make_envs", make_envs)
        patch.setattr(module, "Agent", agent)
        patch.setattr(module, "compute_gae", compute_gae)
        for name in STEPS[request.param]:
            patch.setattr(module, name, spy_on(name))
        run_main(module, *WATCHED_RUN, cwd=tmp_path_factory.mktemp("watched"), monkeypatch=patch)
    return request.param, record


@pytest.mark.parametrize("watched", ["sprig_ppo_atari"], indirect=True)
def test_each_minibatch_takes_a_leader_step_on_theta_then_a_follower_step_on_phi_on_the_same_minibatch(watched):
    _, record = watched
    calls, (agent,) = record["calls"], record["agents"]
    stages = [name for name, _, _, _ in calls]
    assert stages == ["leader_step", "follower_step"] * ITERATIONS * MINIBATCH_UPDATES, stages
    theta, phi = {id(p) for p in agent.leader_parameters()}, {id(p) for p in agent.follower_parameters()}
    for (_, leader_optimizer, _, leader_mb), (_, follower_optimizer, _, follower_mb) in zip(calls[::2], calls[1::2]):
        assert {id(p) for p in leader_optimizer.param_groups[0]["params"]} == theta, "the leader steps theta's optimiser"
        assert {id(p) for p in follower_optimizer.param_groups[0]["params"]} == phi, "the follower steps phi's optimiser"
        assert follower_mb is leader_mb  # the follower responds to the leader's move on the same samples


class Reward(NamedTuple):
    ended: str  # how the step ended: "truncated" (only), "terminated and truncated", or "other"
    given: float  # what main() handed GAE
    env: float  # the env's own (clipped) reward
    expected: float


def rewards_given_to_gae(record):
    """Each reward main() gave GAE, every step of every iteration, with what it should be."""
    steps, rewards = record["envs"].steps, []
    num_steps = len(steps) // len(record["gae"])
    for iteration, (given, agent) in enumerate(record["gae"]):
        for step, (env_rewards, terminations, truncations, final_obs) in enumerate(
            steps[iteration * num_steps : (iteration + 1) * num_steps]
        ):
            for env, reward in enumerate(env_rewards.tolist()):
                if truncations[env] and not terminations[env]:  # cut by the time limit: r + gamma * V(final observation)
                    with torch.no_grad():
                        value = agent.get_value(torch.as_tensor(final_obs[env])[None]).item()
                    rewards.append(Reward("truncated", given[step, env].item(), reward, reward + GAMMA * value))
                else:  # a terminated episode has no value after its end, even when its time ran out on the same step
                    ended = "terminated and truncated" if truncations[env] else "other"
                    rewards.append(Reward(ended, given[step, env].item(), reward, reward))
    return rewards


def test_a_truncated_step_is_bootstrapped_with_gamma_times_the_value_of_its_final_observation(watched):
    _, record = watched
    rewards = rewards_given_to_gae(record)
    truncated = [reward for reward in rewards if reward.ended == "truncated"]
    assert len(truncated) >= 4 * ITERATIONS  # each env was cut at least twice in each 64-step rollout
    given, expected = [reward.given for reward in truncated], [reward.expected for reward in truncated]
    assert given == pytest.approx(expected, rel=1e-5, abs=1e-6), "r + gamma * V(final observation)"
    assert max(abs(reward.expected - reward.env) for reward in truncated) > 1e-2  # so that a dropped gamma shows
    other = [reward for reward in rewards if reward.ended == "other"]
    assert [reward.given for reward in other] == [reward.env for reward in other]  # the env's reward, untouched


def test_a_step_both_terminated_and_truncated_is_not_bootstrapped(watched):
    _, record = watched
    both = [reward for reward in rewards_given_to_gae(record) if reward.ended == "terminated and truncated"]
    assert len(both) >= 1  # the one StepRecord set
    assert [reward.given for reward in both] == [reward.env for reward in both], "no value after a termination"


def test_every_optimiser_steps_at_the_linearly_annealed_rate(watched):
    """CleanRL's schedule, lr * (1 - (k - 1) / num_iterations) through iteration k: over 2 iterations from 1e-3, 1e-3
    in the first and 5e-4 in the second, for each optimiser."""
    script, record = watched
    for name in STEPS[script]:
        rates = [rate for called, _, rate, _ in record["calls"] if called == name]
        assert rates == pytest.approx([1e-3] * MINIBATCH_UPDATES + [5e-4] * MINIBATCH_UPDATES), name


def test_a_tiny_target_kl_stops_the_update_after_its_first_epoch(twin, tmp_path, monkeypatch):
    """The KL check after each epoch (CleanRL's): one step moves the policy far past 1e-9 (the approximate KL of the
    first epoch's last minibatch is about 2e-5 in PPO, 2e-3 in SPRIG), so of TINY_RUN's 2 epochs of 2 minibatches only
    the first runs."""
    name, *_ = STEPS[twin.__name__]  # SPRIG: its leader stage, one per minibatch
    real_step, calls = getattr(twin, name), []

    def step(*args):
        calls.append(name)
        return real_step(*args)

    monkeypatch.setattr(twin, name, step)
    flags = [*TINY_RUN, "--total-timesteps", 128, "--no-async-envs", "--target-kl", 1e-9]
    run_main(twin, *flags, cwd=tmp_path, monkeypatch=monkeypatch)
    assert len(calls) == 2, f"{len(calls)} minibatch updates; with --target-kl 1e-9, 1 epoch of 2"
