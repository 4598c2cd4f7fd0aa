"""The Atari-5 games (benchmark.sh --games atari5): their envs, and each script's agent acting and updating on them.

The five games differ from BeamRider where the scripts could trip: BattleZone and DoubleDunk act with all 18 actions,
every one of the five needs FIRE to start, and their episodes end in other ways. Everything else a run does is the
same code for every game, checked on BeamRider by the other tests; so here, in this process: the envs as the scripts
build them (the same code in both, tests/test_twins.py), played with random actions over the whole action set, their
exact state saved and restored as a checkpoint does, and each script's agent on what they showed.
"""

import numpy as np
import ppo_atari
import pytest
import sprig_ppo_atari
import torch

ATARI5_ACTIONS = {
    "BattleZoneNoFrameskip-v4": 18,
    "DoubleDunkNoFrameskip-v4": 18,
    "NameThisGameNoFrameskip-v4": 6,
    "PhoenixNoFrameskip-v4": 8,
    "QbertNoFrameskip-v4": 6,
}
"""each game's minimal action set, the one the scripts' policies choose from"""

NUM_ENVS, STEPS = 2, 32  # episodes cut at 20 agent steps: each env ends one (and restarts, pressing FIRE) within 32


@pytest.fixture(scope="module", params=ATARI5_ACTIONS)
def played(request):
    """One game's envs as the scripts build them, played for STEPS steps with random actions; halfway, their state is
    saved, and at the end restored and the second half played again with the same actions."""
    args = ppo_atari.Args(env_id=request.param, num_envs=NUM_ENVS, max_episode_steps=20, async_envs=False)
    envs = ppo_atari.make_envs(args, "atari5", ppo_atari.EnvState)
    rng = np.random.default_rng(0)
    actions = rng.integers(envs.single_action_space.n, size=(STEPS, NUM_ENVS))
    obs, _ = envs.reset(seed=1)
    observations, outcomes, episodes = [], [], []
    for step in range(STEPS):
        if step == STEPS // 2:
            saved, saved_obs = [ppo_atari.to_saveable(state) for state in envs.get_attr("env_state")], obs  # a copy
        observations.append(obs)
        obs, rewards, terminations, truncations, infos = envs.step(actions[step])
        outcomes.append((obs, rewards, terminations, truncations))
        episodes += ppo_atari.finished_episodes(infos)
    envs.set_attr("env_state", [ppo_atari.from_saveable(state) for state in saved])  # as --resume does
    obs, replayed = saved_obs, []
    for step in range(STEPS // 2, STEPS):
        obs, rewards, terminations, truncations, _ = envs.step(actions[step])
        replayed.append((obs, rewards, terminations, truncations))
    action_meanings = envs.envs[0].unwrapped.get_action_meanings()
    num_actions, fire_reset = envs.single_action_space.n, "FireReset" in str(envs.envs[0])
    envs.close()
    return {
        "env_id": request.param,
        "num_actions": num_actions,
        "action_meanings": action_meanings,
        "fire_reset": fire_reset,
        "obs": torch.as_tensor(np.stack(observations)).flatten(0, 1),  # (STEPS * NUM_ENVS, 4, 84, 84)
        "actions": torch.as_tensor(actions).flatten(),
        "episodes": episodes,
        "outcomes": outcomes[STEPS // 2 :],
        "replayed": replayed,
    }


def test_each_game_has_its_minimal_action_set_presses_fire_and_ends_an_episode_in_every_env(played):
    assert played["num_actions"] == len(played["action_meanings"]) == ATARI5_ACTIONS[played["env_id"]]
    assert played["action_meanings"][1] == "FIRE" and played["fire_reset"]
    assert {env for env, _, _ in played["episodes"]} == set(range(NUM_ENVS))  # cut at 20 steps, then reset


def test_each_games_saved_env_state_replays_the_same_steps(played):
    """What a checkpoint saves of the envs (emulator, its RNG, each wrapper's state) puts them back exactly."""
    for (obs, rewards, terminations, truncations), again in zip(played["outcomes"], played["replayed"], strict=True):
        assert np.array_equal(obs, again[0])
        assert np.array_equal(rewards, again[1])
        assert np.array_equal(terminations, again[2]) and np.array_equal(truncations, again[3])
    assert any(truncations.any() for _, _, _, truncations in played["outcomes"])  # an episode ended and restarted


def ppo_update(module, agent, mb, args):
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    return module.ppo_step(agent, optimizer, mb, args)


def sprig_update(module, agent, mb, args):
    leader_optimizer = torch.optim.Adam(agent.leader_parameters(), lr=args.learning_rate, eps=1e-5)
    follower_optimizer = torch.optim.Adam(agent.follower_parameters(), lr=args.learning_rate, eps=1e-5)
    return module.leader_step(agent, leader_optimizer, mb, args) | module.follower_step(agent, follower_optimizer, mb, args)


@pytest.mark.parametrize("module, update", [(ppo_atari, ppo_update), (sprig_ppo_atari, sprig_update)], ids=["ppo", "sprig"])
def test_each_scripts_agent_acts_over_the_games_actions_and_updates_on_what_it_played(played, module, update):
    torch.manual_seed(0)
    num_actions, obs = played["num_actions"], played["obs"]
    agent = module.Agent(num_actions)  # as main() builds it, from envs.single_action_space.n
    sampled, _, _, _ = agent.get_action_and_value(obs)
    assert ((0 <= sampled) & (sampled < num_actions)).all()
    with torch.no_grad():
        _, logprobs, _, values = agent.get_action_and_value(obs, played["actions"])  # every action the game took
    advantages = torch.randn(len(obs))
    mb = {"obs": obs, "actions": played["actions"], "logprobs": logprobs, "values": values.flatten()}
    mb |= {"advantages": (advantages - advantages.mean()) / advantages.std(), "returns": values.flatten() + 1}
    before = agent.actor.weight.detach().clone()
    stats = update(module, agent, mb, module.Args())
    assert agent.actor.weight.shape[0] == num_actions and not torch.equal(agent.actor.weight, before)
    assert all(torch.isfinite(value) for value in stats.values())
