"""The Atari wrapper chain, checked on real ALE environments, in both scripts (the `twin` fixture: each script's copy)."""

import gymnasium as gym
import numpy as np


class ActionLog(gym.Wrapper):
    """Records the actions that reach the emulator: a spy under the wrapper being tested, not a replacement."""

    def __init__(self, env):
        super().__init__(env)
        self.actions = []

    def step(self, action):
        self.actions.append(int(action))
        return self.env.step(action)


def find_wrapper(env, kind):
    while not isinstance(env, kind):
        env = env.env
    return env


def test_observation_is_four_stacked_84x84_uint8_frames(twin):
    env = twin.make_env("BeamRiderNoFrameskip-v4", 0, False, "test")()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.observation_space.shape == (4, 84, 84)
    obs, *_ = env.step(0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8


def test_v5_ids_train_through_the_same_preprocessing_and_keep_their_sticky_actions(twin):
    """A v5 env skips 4 frames itself; built with frameskip=1, AtariPreprocessing skips and max-pools as for v4."""
    env = twin.make_env("ALE/BeamRider-v5", 0, False, "test")()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    ale = env.unwrapped.ale
    frames = ale.getEpisodeFrameNumber()
    env.step(0)
    assert ale.getEpisodeFrameNumber() - frames == 4  # one agent step, 4 emulator frames, not 16
    assert ale.getFloat("repeat_action_probability") == 0.25  # Machado et al. (2018)'s protocol, as v5 defines it
    v4 = twin.make_env("BeamRiderNoFrameskip-v4", 0, False, "test")().unwrapped.ale
    assert v4.getFloat("repeat_action_probability") == 0.0
    no_sticky = twin.make_env("ALE/BeamRider-v5", 0, False, "test", repeat_action_probability=0.0)().unwrapped.ale
    assert no_sticky.getFloat("repeat_action_probability") == 0.0


def test_fire_reset_presses_fire_then_right_on_breakout(twin):
    env = ActionLog(gym.make("BreakoutNoFrameskip-v4"))
    env = twin.FireReset(env)
    env.reset(seed=0)
    assert find_wrapper(env, ActionLog).actions == [1, 2]


def test_fire_reset_is_only_used_where_the_game_has_fire(twin):
    breakout = twin.make_env("BreakoutNoFrameskip-v4", 0, False, "test")()
    freeway = twin.make_env("FreewayNoFrameskip-v4", 0, False, "test")()
    assert "FireReset" in str(breakout)
    assert "FIRE" not in freeway.unwrapped.get_action_meanings() and "FireReset" not in str(freeway)


def play_until_terminated(env, action=0, limit=20000):
    for _ in range(limit):
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return info
    raise AssertionError("the episode did not end")


def test_episodic_life_terminates_on_life_loss_without_resetting_the_emulator(twin):
    env = twin.make_env("BreakoutNoFrameskip-v4", 0, False, "test")()
    env.reset(seed=0)
    ale = env.unwrapped.ale
    assert ale.lives() == 5
    info = play_until_terminated(env)
    assert ale.lives() == 4
    assert "episode" not in info  # a life loss is not a finished episode
    frame_before_reset = ale.getEpisodeFrameNumber()
    env.reset()
    assert ale.lives() == 4, "reset after a life loss must not restart the game"
    assert ale.getEpisodeFrameNumber() > frame_before_reset


def test_episodic_life_resets_the_emulator_only_on_game_over(twin):
    env = twin.make_env("BreakoutNoFrameskip-v4", 0, False, "test")()
    env.reset(seed=0)
    ale = env.unwrapped.ale
    for lives_left in (4, 3, 2, 1):
        play_until_terminated(env)
        assert ale.lives() == lives_left and "episode" not in env.reset()[1]
    info = play_until_terminated(env)
    assert ale.lives() == 0
    assert info["episode"]["l"] > 0  # the real end carries the episode statistics
    env.reset()
    assert ale.lives() == 5
    assert ale.getEpisodeFrameNumber() < 200  # a fresh game: only no-ops and the FIRE presses so far


def test_rewards_are_clipped_to_their_sign_while_statistics_keep_the_raw_score(twin):
    env = twin.make_env("BeamRiderNoFrameskip-v4", 0, False, "test")()
    env.reset(seed=0)
    stats = find_wrapper(env, gym.wrappers.RecordEpisodeStatistics)
    rng = np.random.default_rng(0)
    clipped = []
    while stats.episode_returns == 0:
        _, reward, terminated, truncated, _ = env.step(rng.integers(env.action_space.n))
        assert not (terminated or truncated)
        clipped.append(reward)
    assert set(clipped) <= {0.0, 1.0} and clipped[-1] == 1.0
    assert stats.episode_returns > 1  # BeamRider scores 44 for an enemy saucer


def test_max_episode_steps_truncates_in_agent_steps(twin):
    env = twin.make_env("BeamRiderNoFrameskip-v4", 0, False, "test", max_episode_steps=50)()
    env.reset(seed=0)
    for step in range(1, 51):
        _, _, terminated, truncated, info = env.step(0)
        if terminated or truncated:
            break
    assert truncated and not terminated
    # the no-op starts count against the limit too (a few frames, at most 30), so the cut is within 8 agent steps
    assert 42 <= step <= 50
    assert "episode" in info


def make_vector_env(twin, env_id, num_envs, max_episode_steps=None):
    return gym.vector.SyncVectorEnv(
        [twin.make_env(env_id, i, False, "test", max_episode_steps) for i in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def test_no_stored_transition_crosses_an_episode_boundary(twin):
    """Frame stacks slide by one frame within an episode; after an end, the next observation is a fresh stack
    (all four frames the reset frame) and the old episode's last observation is only in infos["final_obs"]."""
    envs = make_vector_env(twin, "BreakoutNoFrameskip-v4", 4, max_episode_steps=40)
    obs, _ = envs.reset(seed=1)
    rng = np.random.default_rng(1)
    ends = 0
    for _ in range(300):
        next_obs, _, terminations, truncations, infos = envs.step(rng.integers(4, size=4))
        for i in range(4):
            if terminations[i] or truncations[i]:
                ends += 1
                assert np.array_equal(infos["final_obs"][i][:3], obs[i][1:])
                assert all(np.array_equal(next_obs[i][0], frame) for frame in next_obs[i][1:])
            else:
                assert np.array_equal(next_obs[i][:3], obs[i][1:])
        obs = next_obs
    assert ends >= 10


def test_every_real_episode_is_counted_exactly_once(twin):
    """Game over (no lives left) or truncation ends an episode; a life loss does not. Several envs end together."""
    envs = make_vector_env(twin, "BreakoutNoFrameskip-v4", 8, max_episode_steps=30)
    envs.reset(seed=2)
    rng = np.random.default_rng(2)
    counted, expected, simultaneous = [], [], 0
    for step in range(400):
        _, _, terminations, truncations, infos = envs.step(rng.integers(4, size=8))
        ended = np.flatnonzero(terminations | truncations)
        real_ends = [i for i in ended if truncations[i] or infos["final_info"]["lives"][i] == 0]
        expected += [(step, i) for i in real_ends]
        episodes = twin.finished_episodes(infos)
        counted += [(step, i) for i, _, _ in episodes]
        simultaneous += len(episodes) >= 2
    assert sorted(counted) == sorted(expected)
    assert len(counted) >= 40 and simultaneous >= 1
