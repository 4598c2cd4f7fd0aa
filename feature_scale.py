"""How large each network's features are at initialisation, and how far one update moves its policy, on real frames.

SPRIG's network puts its features f_theta(s) at about ten times the scale of PPO's Nature CNN, and its policy moves
about ten times as far per update at the same learning rate (docs/design.md, "The scale of the features"). This tool
shows both for every benchmark method named: it plays a game with random actions, builds each method's network
freshly from the same seed, prints the root-mean-square activation after each block and the mean norm of f_theta, then
runs the method's own first update (its stages, optimisers and hyperparameters, under each preset) on those frames
with their real rewards and prints the policy's KL divergence from where it started.

Run:
    python feature_scale.py
    python feature_scale.py --env-id PongNoFrameskip-v4 --methods ppo sprig-scaled
Prints two markdown tables; nothing is written.
"""

import time
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
import tyro

import ppo_atari
import sprig_ppo_atari
from methods import PRESETS, method_named

# The methods, each a cell of {network} x {update}: PPO's CNN under PPO's update (ppo) and the game (sprig-cnn); SPRIG's
# network under both (sprig-joint, sprig); the same with its features at the CNN's scale (sprig-scaled-joint, sprig-scaled).
CELLS = ("ppo", "sprig-cnn", "sprig-joint", "sprig", "sprig-scaled-joint", "sprig-scaled")


@dataclass
class Args:
    env_id: str = "BeamRiderNoFrameskip-v4"
    """the game whose frames the networks read"""
    seed: int = 1
    """seed of the random play, of every network's initialisation and of the update's minibatches"""
    methods: tuple[str, ...] = CELLS
    """benchmark methods whose networks and first update are measured"""
    presets: tuple[str, ...] = ("cleanrl", "paper")
    """benchmark presets under which the first update runs (their rollout size, minibatches, learning rate, clip)"""
    threads: int = field(default_factory=torch.get_num_threads)
    """torch's threads"""


def script_args(method, preset):
    """The training script's Args for this benchmark method under this preset, as benchmark.sh runs it (batch sizes filled in)."""
    script = ppo_atari if method.script == "ppo_atari.py" else sprig_ppo_atari
    args = tyro.cli(script.Args, args=[*PRESETS[preset], *method.run_flags])
    args.batch_size = args.num_envs * args.num_steps
    args.minibatch_size = args.batch_size // args.num_minibatches
    return args


def random_play(env_id, num_envs, num_steps, seed):
    """num_steps steps of num_envs envs with uniformly random actions, through the scripts' own wrappers: the
    observations (num_steps, num_envs, 4, 84, 84) as uint8, the actions, rewards and dones (num_steps, num_envs), and
    the observation and done after the last step."""
    envs = gym.vector.SyncVectorEnv(
        [sprig_ppo_atari.make_env(env_id, i, False, "") for i in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    rng = np.random.default_rng(seed)
    obs, actions, rewards, dones = [], [], [], []
    next_obs, _ = envs.reset(seed=seed)
    next_done = np.zeros(num_envs)
    for _ in range(num_steps):
        obs.append(next_obs)
        dones.append(next_done)
        actions.append(rng.integers(envs.single_action_space.n, size=num_envs))
        next_obs, reward, terminations, truncations, _ = envs.step(actions[-1])
        rewards.append(reward)
        next_done = np.logical_or(terminations, truncations)
    envs.close()
    play = {"actions": actions, "rewards": rewards, "dones": dones, "next_done": next_done}
    play = {name: torch.as_tensor(np.array(values), dtype=torch.float32) for name, values in play.items()}
    play |= {"obs": torch.as_tensor(np.stack(obs)), "next_obs": torch.as_tensor(next_obs)}
    return play, int(envs.single_action_space.n)


def block_scales(perception, x):
    """The root-mean-square activation after each block of the leader, and the features f at the end, for input x
    (already scaled to [0, 1]). SPRIG's blocks end in their attention; the Nature CNN's in the ReLU after each layer."""
    scales = []
    if isinstance(perception, sprig_ppo_atari.Perception):
        for conv, norm, attention in zip(perception.convs, perception.norms, perception.attentions):
            x, _ = attention(torch.relu(norm(conv(x))))
            scales.append(x)
        features = perception.head(x)
    else:
        layers = list(perception.network)
        x = x.contiguous(memory_format=torch.channels_last)
        for layer in layers[:-3]:  # the convolutions and their ReLUs, before the flatten and the projection to 512
            x = layer(x)
            if isinstance(layer, torch.nn.ReLU):
                scales.append(x)
        features = torch.nn.Sequential(*layers[-3:])(x)
    return [x.pow(2).mean().sqrt().item() for x in scales], features


def features(agent, obs):
    """f(s) of either script's agent, for uint8 observations: the same call its get_action_and_value makes."""
    if isinstance(agent, sprig_ppo_atari.Agent):
        return agent.perception(obs / 255.0)[0]
    return agent.network(obs.contiguous(memory_format=torch.channels_last) / 255.0)


def minibatch_step(args, agent, optimizers, mb):
    """One minibatch of the method's update, as its main() takes it: PPO's step, SPRIG's two stages, or its joint step."""
    if not isinstance(agent, sprig_ppo_atari.Agent):
        ppo_atari.ppo_step(agent, optimizers[0], mb, args)
    elif args.update == "joint":
        sprig_ppo_atari.joint_step(agent, optimizers[0], mb, args)
    else:
        sprig_ppo_atari.leader_step(agent, optimizers[0], mb, args)
        sprig_ppo_atari.follower_step(agent, optimizers[1], mb, args)


def first_update(args, agent, play):
    """The method's first update on this play, as its training loop runs it (GAE from the rewards and the network's own
    values, every epoch over every minibatch, with advantages normalised per minibatch): the mean KL(pi_before ||
    pi_after) over the batch's frames, and the fraction of them whose taken action's probability ratio left
    [1 - clip, 1 + clip], the first update's clipfrac as training would log it at its end."""
    steps = args.num_steps
    obs, actions = play["obs"][:steps], play["actions"][:steps].flatten().long()  # (steps, envs, 4, 84, 84), (steps * envs)
    with torch.no_grad():
        logits_before = agent.actor(features(agent, obs.flatten(0, 1)))
        _, logprobs, _, values = agent.get_action_and_value(obs.flatten(0, 1), actions)
        values = values.reshape(steps, -1)
        # the step after the batch: the next observation played, or after the last, the one it ended on
        next_obs, next_done = (
            (play["obs"][steps], play["dones"][steps]) if steps < len(play["obs"]) else (play["next_obs"], play["next_done"])
        )
        next_value = agent.get_value(next_obs).reshape(1, -1)
        advantages, returns = sprig_ppo_atari.compute_gae(
            play["rewards"][:steps], values, play["dones"][:steps], next_value, next_done, args.gamma, args.gae_lambda
        )
    if isinstance(agent, sprig_ppo_atari.Agent) and args.update == "stackelberg":
        players = [agent.leader_parameters(), agent.follower_parameters()]
    else:
        players = [agent.parameters()]
    optimizers = [torch.optim.Adam(parameters, lr=args.learning_rate, eps=1e-5) for parameters in players]
    batch = {"obs": obs.flatten(0, 1), "actions": actions, "logprobs": logprobs, "values": values.flatten()}
    batch |= {"advantages": advantages.flatten(), "returns": returns.flatten()}
    rng = np.random.default_rng(args.seed)
    for _ in range(args.update_epochs):
        indices = rng.permutation(args.batch_size)
        for start in range(0, args.batch_size, args.minibatch_size):
            mb = {name: tensor[indices[start : start + args.minibatch_size]] for name, tensor in batch.items()}
            if args.norm_adv:
                mb["advantages"] = (mb["advantages"] - mb["advantages"].mean()) / (mb["advantages"].std() + 1e-8)
            minibatch_step(args, agent, optimizers, mb)
    with torch.no_grad():
        logits_after = agent.actor(features(agent, batch["obs"]))
        _, logprobs_after, _, _ = agent.get_action_and_value(batch["obs"], actions)
    before, after = torch.log_softmax(logits_before, -1), torch.log_softmax(logits_after, -1)
    kl = (before.exp() * (before - after)).sum(-1).mean().item()
    clipfrac = ((logprobs_after - logprobs).exp().sub(1).abs() > args.clip_coef).float().mean().item()
    return kl, clipfrac


def new_agent(args, num_actions, seed):
    """The method's agent, freshly initialised from this seed as its script initialises it."""
    torch.manual_seed(seed)
    if isinstance(args, sprig_ppo_atari.Args):
        return sprig_ppo_atari.Agent(num_actions, args.perception)
    return ppo_atari.Agent(num_actions)


def main():
    args = tyro.cli(Args)
    unknown = [name for name in args.methods if method_named(name) is None]
    if unknown or set(args.presets) - set(PRESETS):
        raise SystemExit(f"error: unknown method or preset: {' '.join(unknown + sorted(set(args.presets) - set(PRESETS)))}")
    torch.set_num_threads(args.threads)
    configs = {(name, preset): script_args(method_named(name), preset) for name in args.methods for preset in args.presets}
    if len({config.num_envs for config in configs.values()}) > 1:
        raise SystemExit("error: the presets play different numbers of envs; measure them one at a time (--presets)")
    num_envs, steps = next(iter(configs.values())).num_envs, max(config.num_steps for config in configs.values())
    play, num_actions = random_play(args.env_id, num_envs, steps, args.seed)
    frames = play["obs"][: 1024 // num_envs].flatten(0, 1)  # the first 1,024 frames: what every network is measured on

    print(
        f"{args.env_id}, {len(frames)} frames of random play (seed {args.seed}); RMS pixel {(frames / 255.0).pow(2).mean().sqrt():.3f}\n"
    )
    print("| network (methods) | mean norm of f at init | RMS after block 1, 2, 3 | RMS of f |")
    print("| --- | --- | --- | --- |")
    networks = {}
    for name in args.methods:
        perception = getattr(configs[name, args.presets[0]], "perception", "nature")
        networks.setdefault(perception, []).append(name)
    for perception, names in networks.items():
        agent = new_agent(configs[names[0], args.presets[0]], num_actions, args.seed)
        leader = agent.perception if isinstance(agent, sprig_ppo_atari.Agent) else agent
        with torch.no_grad():
            scales, f = block_scales(leader, frames / 255.0)
        print(
            f"| {perception} ({', '.join(names)}) | {f.norm(dim=1).mean():.2f} | {', '.join(f'{s:.3f}' for s in scales)} | {f.pow(2).mean().sqrt():.3f} |"
        )

    print("\n| method | preset | KL after the first update | clipfrac after it | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for (name, preset), config in configs.items():
        began = time.time()
        kl, clipfrac = first_update(config, new_agent(config, num_actions, args.seed), play)
        print(f"| {name} | {preset} | {kl:.5f} | {clipfrac:.3f} | {time.time() - began:.0f} |", flush=True)


if __name__ == "__main__":
    main()
