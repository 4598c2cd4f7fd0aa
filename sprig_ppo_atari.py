"""SPRIG on Atari: PPO where perception leads and the policy follows, a cooperative Stackelberg game in one agent.

SPRIG: Stackelberg Perception-Reinforcement learning with Internal Game dynamics (Martinez-Lopez, Chen, Lu,
arXiv 2502.14264). The leader, perception f_theta (attention blocks over the stacked frames), commits to features
and pays an attention cost C_theta; the follower, policy pi_phi and value V_phi, best-responds with PPO on those
features. Each minibatch takes a leader step on theta, then a follower step on phi (Algorithm 1). Everything else
is ppo_atari.py: `diff ppo_atari.py sprig_ppo_atari.py` shows exactly what SPRIG adds.

Run:
    python sprig_ppo_atari.py --env-id BeamRiderNoFrameskip-v4
    python sprig_ppo_atari.py --help
Logs: TensorBoard events in runs/{run_name} (`tensorboard --logdir runs`), videos in videos/{run_name}.
Exit status: 0 the run finished; 3 it was stopped by Ctrl-C or SIGTERM, after its iteration, with its checkpoint
written (go on with --resume); 4 it paused at --stop-at-step with its checkpoint written (go on with --resume and a
larger --stop-at-step or none); any other status, it failed (a bad flag or an error: one line says which).

Read top to bottom: Args, the Atari wrappers, the network, the update, then main() with the training loop: that is
Algorithm 1. After main() come the optional variants (--update joint, --perception nature and attention-scaled,
--leader-gradient implicit), then the fenced run machinery (checkpoints, resume, signals, evaluation, timing, CUDA
graphs): skip both at first.
"""

import contextlib
import difflib
import io
import itertools
import math
import multiprocessing
import os
import random
import signal
import time
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Literal
import ale_py
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
import tyro
from torch.distributions.categorical import Categorical
from torch.utils.tensorboard import SummaryWriter

gym.register_envs(ale_py)


@dataclass
class Args:
    # The experiment
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, cuda will be enabled by default (falls back to the CPU with a warning when CUDA is absent)"""
    track: bool = False
    """if toggled, this experiment will be tracked with Weights and Biases"""
    wandb_project_name: str = "sprig-ppo"
    """the wandb's project name"""
    wandb_entity: str | None = None
    """the entity (team) of wandb's project"""
    capture_video: bool = False
    """whether to capture videos of the agent performances (check out `videos` folder)"""
    env_id: str = "BeamRiderNoFrameskip-v4"
    """the id of the environment"""
    total_timesteps: int = 10000000
    """total timesteps of the experiments"""
    repeat_action_probability: float | None = None
    """ALE's sticky actions: the chance the emulator repeats the last action; None keeps the env id's (v5 0.25, v4 0)"""
    max_episode_steps: int | None = None
    """truncate episodes after this many agent steps (4 emulator frames each); None keeps the env's own limit"""

    # The algorithm: PPO, with CleanRL's defaults for Atari
    learning_rate: float = 2.5e-4
    """the learning rate of the optimizer"""
    num_envs: int = 8
    """the number of parallel game environments"""
    num_steps: int = 128
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = True
    """Toggle learning rate annealing for policy and value networks"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 0.95
    """the lambda for the general advantage estimation"""
    num_minibatches: int = 4
    """the number of mini-batches"""
    update_epochs: int = 4
    """the K epochs to update the policy"""
    norm_adv: bool = True
    """Toggles advantages normalization"""
    clip_coef: float = 0.1
    """the surrogate clipping coefficient"""
    clip_vloss: bool = True
    """Toggles whether or not to use a clipped loss for the value function, as per the paper."""
    ent_coef: float = 0.01
    """coefficient of the entropy"""
    vf_coef: float = 0.5
    """coefficient of the value function"""
    max_grad_norm: float = 0.5
    """the maximum norm for the gradient clipping"""
    target_kl: float | None = None
    """the target KL divergence threshold"""

    # SPRIG's game: the leader (perception, theta) and the follower (policy and value, phi)
    update: Literal["stackelberg", "joint"] = "stackelberg"
    """SPRIG's two-stage game (stackelberg), or its network trained as plain PPO, one optimiser over all (joint: the control)"""
    perception: Literal["attention", "attention-scaled", "nature"] = "attention"
    """the leader: SPRIG's attention blocks, those with f_theta at the CNN's scale (attention-scaled), or the Nature CNN"""
    alpha_coop: float = 0.7
    """SPRIG's cooperation weight: the leader maximises alpha * (-C_theta) + (1 - alpha) * u_F"""
    attn_cost_coef: float = 1e-4
    """SPRIG's lambda_c, the weight of the attention cost C_theta"""
    leader_utility: Literal["follower", "pg"] = "follower"
    """SPRIG's u_F in the leader's utility: the follower's PPO objective (follower), or Algorithm 1's printed u_policy (pg)"""
    leader_gradient: Literal["direct", "implicit"] = "direct"
    """the leader's gradient: d u_L/d theta with phi held (direct, Algorithm 1), or through the follower's response (implicit)"""
    implicit_damping: float = 1.0
    """--leader-gradient implicit: lambda, added to the follower's Hessian -d2 u_F/d phi2 before it is inverted"""
    implicit_cg_iters: int = 10
    """--leader-gradient implicit: conjugate-gradient iterations per follower head (policy, value) to solve for w"""
    implicit_max_ratio: float = 1.0
    """--leader-gradient implicit: the implicit term is scaled down to at most this many times the direct term's norm"""

    # The run's machinery: saving, checkpoints, evaluation, how the envs step (none of it changes what is learned)
    save_model: bool = False
    """whether to save the trained agent's weights to `runs/{run_name}/{exp_name}.cleanrl_model` at the end"""
    checkpoint_every: int = 0
    """write the full training state to runs/{run_name}/checkpoint.pt every this many iterations (0: never)"""
    stop_at_step: int | None = None
    """pause once this many steps are done: write the checkpoint and exit 4, on the schedule of --total-timesteps"""
    resume: str | None = None
    """continue the run of this checkpoint.pt to its --total-timesteps, in its run directory"""
    eval_episodes: int = 0
    """after training, play this many full games (all lives) and log their scores as eval/episodic_return (0: none)"""
    eval_checkpoint: str | None = None
    """instead of training, evaluate this .cleanrl_model or checkpoint.pt of this script for --eval-episodes games"""
    async_envs: bool = False
    """step the envs in subprocesses (gymnasium AsyncVectorEnv); on by default where the run has a core per env (8)"""
    log_attention_every: int = 0
    """every N iterations, draw env 0's latest frames with the three blocks' masks to TensorBoard (sprig/attention)"""
    cudagraphs: bool = False
    """capture the rollout's inference and each minibatch update once in CUDA graphs and replay them (needs CUDA)"""

    # to be filled in runtime
    batch_size: int = 0
    """the batch size (computed in runtime)"""
    minibatch_size: int = 0
    """the mini-batch size (computed in runtime)"""
    num_iterations: int = 0
    """the number of iterations (computed in runtime)"""


class EpisodicLife(gym.Wrapper):
    """End the episode for the learner on every life lost, but reset the emulator only on real game over.

    A life loss is a strong signal for credit assignment (DQN's trick, kept by CleanRL), yet restarting the game
    each time would show the agent nothing but first lives. `reset` after a life loss just takes a no-op step.
    Lives are read from `env.unwrapped.ale`, so observation wrappers may sit in between.
    """

    def __init__(self, env):
        super().__init__(env)
        self.lives = 0
        self.real_done = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.real_done = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.real_done:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # the no-op itself ended the game
                obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireReset(gym.Wrapper):
    """Press FIRE after every reset, in games that wait for it (Breakout, BeamRider, ...).

    Without it an agent can sit on a frozen start screen and collect no learning signal at all.
    Applied only where the action meanings contain FIRE.
    """

    def __init__(self, env):
        super().__init__(env)
        assert env.unwrapped.get_action_meanings()[1] == "FIRE"
        assert len(env.unwrapped.get_action_meanings()) >= 3

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(2)
        if terminated or truncated:
            obs, info = self.env.reset(**kwargs)
        return obs, info


def make_env(env_id, idx, capture_video, run_name, max_episode_steps=None, repeat_action_probability=None, wrap_env=None):
    """One Atari env with CleanRL's wrapper chain, built from gymnasium's own wrappers where they exist.

    wrap_env, if given, wraps the finished env in the process that steps it: the run machinery reads and restores
    the env's state there for exact checkpoints."""

    def thunk():
        # frameskip=1: AtariPreprocessing skips frames and max-pools them, for v5 ids (which skip 4 frames
        # themselves) as for NoFrameskip-v4 ones. The time limit counts emulator frames; the agent acts every 4.
        kwargs = {"frameskip": 1}
        if max_episode_steps is not None:
            kwargs["max_episode_steps"] = 4 * max_episode_steps
        if repeat_action_probability is not None:
            kwargs["repeat_action_probability"] = repeat_action_probability
        if capture_video and idx == 0:
            env = gym.make(env_id, render_mode="rgb_array", **kwargs)
            env = gym.wrappers.RecordVideo(env, f"videos/{run_name}")
        else:
            env = gym.make(env_id, **kwargs)
        # Innermost, so it sees raw scores and real game overs: the numbers users compare with papers.
        env = gym.wrappers.RecordEpisodeStatistics(env)
        # No-op starts (up to 30), frame skip 4 with max over the last two frames, 84x84, grayscale.
        env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True)
        env = EpisodicLife(env)
        if "FIRE" in env.unwrapped.get_action_meanings():
            env = FireReset(env)
        env = gym.wrappers.ClipReward(env, -1, 1)  # sign of the reward, as the Nature DQN paper
        env = gym.wrappers.FrameStackObservation(env, 4)
        return env if wrap_env is None else wrap_env(env)

    return thunk


def make_envs(args, run_name, wrap_env=None):
    """The vector env. Same-step autoreset: a finished env is reset inside the step that ended it, so no stored
    transition pairs the last observation of one episode with the first of the next. wrap_env: as in make_env."""
    vector_env = gym.vector.AsyncVectorEnv if args.async_envs else gym.vector.SyncVectorEnv
    return vector_env(
        [
            make_env(
                args.env_id, i, args.capture_video, run_name, args.max_episode_steps, args.repeat_action_probability, wrap_env
            )
            for i in range(args.num_envs)
        ],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def finished_episodes(infos):
    """(env index, return, length) of every real episode that ended this step, each exactly once."""
    final_info = infos.get("final_info", {})
    if "episode" not in final_info:
        return []
    ended = np.flatnonzero(final_info["_episode"])
    return [(i, float(final_info["episode"]["r"][i]), int(final_info["episode"]["l"][i])) for i in ended]


def layer_init(layer, std=np.sqrt(2), bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


def sample(probs):
    """One action per row of the Categorical probs, drawn as probs.sample() draws it: argmax(p / q), q ~ Exp(1), the
    Gumbel-max trick (the same draws from the same RNG state, tested). probs.sample() first checks p on the host, which
    waits for the GPU and which a CUDA graph (--cudagraphs) cannot hold."""
    q = torch.empty_like(probs.probs).exponential_(1)
    return (probs.probs / q).argmax(dim=-1)


class GatedSelfAttention(nn.Module):
    """Self-attention over the H*W positions of a feature map, gated per position by a learned mask m in (0, 1).

    The four stacked frames are channels, so each position already carries four time steps: attention over
    positions is spatio-temporal. The paper prices attention with the L1 norm of the attention maps, but each
    softmax row sums to 1, so that norm is the constant N with zero gradient. The mask m is what perception spends
    instead: it decides how much attended context each position takes, and its L1 norm is bounded and trainable.
    """

    def __init__(self, channels):
        super().__init__()
        # The paper's 1x1 convolutions are linear maps of each position's C channels, applied here as exactly that:
        # nn.Linear on (B, N, C) is the same function and trains faster on CPU than four small convolutions.
        self.query = layer_init(nn.Linear(channels, channels // 8))
        self.key = layer_init(nn.Linear(channels, channels // 8))
        self.value = layer_init(nn.Linear(channels, channels))
        self.mask = layer_init(nn.Linear(channels, 1))  # b_m = 0, so m starts at 0.5

    def forward(self, x):
        batch, channels, height, width = x.shape
        positions = x.flatten(2).transpose(1, 2).contiguous()  # (B, N, C): the C features at each of the N = H*W positions
        q, k, v = self.query(positions), self.key(positions), self.value(positions)  # (B, N, C/8), (B, N, C/8), (B, N, C)
        # context = softmax(q k^T / sqrt(C/8)) v, the attention A (B, N, N) with rows summing to 1, applied to v.
        # scaled_dot_product_attention computes exactly that. Its fused (flash) kernel never builds the N x N map, but
        # it takes q, k and v of one width only, so q and k are padded with zeros to width C, which leaves every q.k
        # unchanged; the scale stays 1/sqrt(C/8). Block 1 (400 positions) trains 2.4x faster this way on CPU than
        # with the map written out. tests/test_speed_equivalence.py checks it against the formula term by term.
        d = q.shape[-1]
        q, k = F.pad(q, (0, channels - d)), F.pad(k, (0, channels - d))  # (B, N, C), zeros after the first C/8
        # [:, None] adds the one attention head the kernel expects: (B, 1, N, C)
        context = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=d**-0.5)[:, 0]  # (B, N, C)
        mask = torch.sigmoid(self.mask(positions))  # (B, N, 1)
        y = positions + mask * context  # (B, N, C)
        return y.transpose(1, 2).reshape(batch, channels, height, width), mask.transpose(1, 2).reshape(batch, 1, height, width)


class Perception(nn.Module):
    """The leader f_theta: three Conv -> LayerNorm -> ReLU -> gated self-attention blocks, then Linear 3136 -> 512.

    Returns the features f_theta(s) and the three blocks' masks, from which the attention cost is computed.
    final_norm_gain is the last LayerNorm's initial gain, which sets the scale of f_theta (--perception attention-scaled).
    """

    def __init__(self, final_norm_gain=1.0):
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.attentions = nn.ModuleList()
        in_channels = 4
        # (out channels, kernel, stride, output size): maps of 20x20, 9x9 and 7x7
        for channels, kernel, stride, size in [(32, 8, 4, 20), (64, 4, 2, 9), (64, 3, 1, 7)]:
            self.convs.append(layer_init(nn.Conv2d(in_channels, channels, kernel, stride=stride)))
            self.norms.append(nn.LayerNorm([channels, size, size]))
            self.attentions.append(GatedSelfAttention(channels))
            in_channels = channels
        # The paper names the norm but not its scale. LayerNorm puts each block's activations at unit scale whatever
        # the input's; the two first are normalised again by the next block, so only the last one's gain reaches f.
        nn.init.constant_(self.norms[-1].weight, final_norm_gain)
        self.head = nn.Sequential(nn.Flatten(), layer_init(nn.Linear(64 * 7 * 7, 512)), nn.ReLU())

    def forward(self, x):
        masks = []
        for conv, norm, attention in zip(self.convs, self.norms, self.attentions):
            x, mask = attention(torch.relu(norm(conv(x))))
            masks.append(mask)
        return self.head(x), masks


def attention_cost(masks, attn_cost_coef):
    """C_theta(s) = lambda_c * sum_k ||m_k(s)||_1 / N_k, averaged over the batch; within [0, K * lambda_c].

    The masks are positive, so the L1 norm over N_k positions divided by N_k is their mean.
    """
    return attn_cost_coef * sum(mask.mean(dim=(1, 2, 3)) for mask in masks).mean()


class Agent(nn.Module):
    def __init__(self, num_actions, perception="attention"):
        super().__init__()
        # the leader, theta (--perception nature: ppo_atari.py's CNN, NatureCNN after main; attention-scaled: after main)
        if perception == "nature":
            self.perception = NatureCNN()
        else:
            self.perception = Perception(SCALED_FINAL_NORM_GAIN if perception == "attention-scaled" else 1.0)
        self.actor = layer_init(nn.Linear(512, num_actions), std=0.01)  # the follower, phi: pi_phi ...
        self.critic = layer_init(nn.Linear(512, 1), std=1)  # ... and V_phi

    def leader_parameters(self):
        return list(self.perception.parameters())

    def follower_parameters(self):
        return list(itertools.chain(self.actor.parameters(), self.critic.parameters()))

    def get_value(self, x):
        return self.critic(self.perception(x / 255.0)[0])

    def follow(self, features, action=None):
        """The follower's response to the leader's features: action, its log-probability, entropy and value."""
        logits = self.actor(features)
        probs = Categorical(logits=logits)
        if action is None:
            action = sample(probs)
        return action, probs.log_prob(action), probs.entropy(), self.critic(features)

    def get_action_and_value(self, x, action=None):
        return self.follow(self.perception(x / 255.0)[0], action)


def compute_gae(rewards, values, dones, next_value, next_done, gamma, gae_lambda):
    """Generalised advantage estimation (Schulman et al., 2016), CleanRL's loop.

    rewards, values, dones: (num_steps, num_envs); dones[t] marks that obs[t] starts a new episode, so the value
    of step t+1 is not bootstrapped into step t. Returns (advantages, returns).
    """
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    lastgaelam = 0
    for t in reversed(range(num_steps)):
        if t == num_steps - 1:
            nextnonterminal = 1.0 - next_done
            nextvalues = next_value
        else:
            nextnonterminal = 1.0 - dones[t + 1]
            nextvalues = values[t + 1]
        delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
        advantages[t] = lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam
    return advantages, advantages + values


def ppo_loss(newlogprob, entropy, newvalue, mb, args):
    """PPO's loss on one minibatch: -clipped surrogate + vf_coef * (clipped) value loss - ent_coef * entropy.

    newlogprob, entropy, newvalue: the current network's output on mb, which holds the minibatch's obs, actions,
    logprobs, advantages (already normalised under --norm-adv), returns and values. Returns (loss, its statistics as
    tensors).
    """
    logratio = newlogprob - mb["logprobs"]
    ratio = logratio.exp()

    with torch.no_grad():
        # calculate approx_kl http://joschu.net/blog/kl-approx.html
        old_approx_kl = (-logratio).mean()
        approx_kl = ((ratio - 1) - logratio).mean()
        clipfrac = ((ratio - 1.0).abs() > args.clip_coef).float().mean()

    # Policy loss
    pg_loss1 = -mb["advantages"] * ratio
    pg_loss2 = -mb["advantages"] * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
    pg_loss = torch.max(pg_loss1, pg_loss2).mean()

    # Value loss
    newvalue = newvalue.view(-1)
    if args.clip_vloss:
        v_loss_unclipped = (newvalue - mb["returns"]) ** 2
        v_clipped = mb["values"] + torch.clamp(newvalue - mb["values"], -args.clip_coef, args.clip_coef)
        v_loss_clipped = (v_clipped - mb["returns"]) ** 2
        v_loss_max = torch.max(v_loss_unclipped, v_loss_clipped)
        v_loss = 0.5 * v_loss_max.mean()
    else:
        v_loss = 0.5 * ((newvalue - mb["returns"]) ** 2).mean()

    entropy_loss = entropy.mean()
    loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef
    stats = {
        "policy_loss": pg_loss.detach(),
        "value_loss": v_loss.detach(),
        "entropy": entropy_loss.detach(),
        "old_approx_kl": old_approx_kl,
        "approx_kl": approx_kl,
        "clipfrac": clipfrac,
    }
    return loss, stats


def follower_utilities(agent, features, mb, args):
    """The follower's utilities on these features: u_F = -ppo_loss, its own PPO objective (clipped surrogate, value
    loss, entropy bonus), and u_policy = mean(log pi_phi(a | f) * A), Algorithm 1's printed policy term."""
    _, logprob, entropy, value = agent.follow(features, mb["actions"])
    follower_loss, _ = ppo_loss(logprob, entropy, value, mb, args)
    return -follower_loss, (logprob * mb["advantages"]).mean()


def leader_step(agent, leader_optimizer, mb, args):
    """Algorithm 1, Leader (Perception) Stage: theta moves first, against the current follower phi.

    u_L = alpha_coop * (-C_theta) + (1 - alpha_coop) * u_F, the cooperative value of Eq. 8 in Algorithm 1's order,
    with u_F the follower's utility (--leader-utility): `follower` is the follower's own PPO objective on the leader's
    new features, -ppo_loss (clipped surrogate, value loss, entropy bonus; phi fixed); `pg` is Algorithm 1's printed
    u_policy = mean(log pi_phi(a | f_theta) * A), an unclipped policy gradient. theta moves along d u_L/d theta with
    phi held fixed (--leader-gradient direct), or along the total derivative through phi's response (implicit, below).
    Returns its statistics as tensors.
    """
    features, masks = agent.perception(mb["obs"] / 255.0)  # f_theta(s), m_k(s)
    # C_theta(s); ppo_atari.py's CNN (--perception nature) has no masks and pays nothing: u_L = (1 - alpha) u_F
    cost = attention_cost(masks, args.attn_cost_coef) if masks else features.new_zeros(())
    u_ppo, u_policy = follower_utilities(agent, features, mb, args)  # pi_phi and V_phi on f_theta
    # `follower`: the same function the follower stage minimises, so the two stages cannot drift apart. Its ratio
    # against the rollout's log-probabilities is clipped: the leader too moves the policy only inside PPO's trust region.
    u_follower = u_ppo if args.leader_utility == "follower" else u_policy
    u_leader = args.alpha_coop * -cost + (1 - args.alpha_coop) * u_follower
    leader_params = agent.leader_parameters()
    leader_optimizer.zero_grad()
    stats = {"attention_cost": cost, "u_policy": u_policy, "u_follower": u_follower, "leader_utility": u_leader}
    stats["feature_norm"] = features.detach().norm(dim=1).mean()  # the scale at which f_theta enters the heads
    if args.leader_gradient == "direct":
        (-u_leader).backward(inputs=leader_params)  # gradients into theta only: phi is held fixed
    else:  # the Stackelberg leader's total derivative, through the follower's response to theta: an optional variant,
        # implicit_leader_gradient after main()
        stats |= implicit_leader_gradient(agent, features, mb, u_leader, args)
    grad_norm = nn.utils.clip_grad_norm_(leader_params, args.max_grad_norm)
    leader_optimizer.step()
    stats |= {f"mask_mean_block{k}": mask.mean() for k, mask in enumerate(masks, start=1)}
    return {name: value.detach() for name, value in stats.items()} | {"leader_grad_norm": grad_norm}


def follower_step(agent, follower_optimizer, mb, args):
    """Algorithm 1, Follower (Policy) Stage: phi best-responds to the leader's features with one PPO step.

    The loss of ppo_loss (Eq. 11 with the usual PPO sign: entropy is a bonus). Eq. 11 also adds C_theta, which does
    not depend on phi: it would move no parameter of the follower, so it is left out here (the leader stage reports
    it as attention_cost). Returns ppo_loss's statistics and the follower's grad norm, as tensors.
    """
    # The features are recomputed with the just-updated theta and carry no gradient back to it.
    with torch.no_grad():
        features, _ = agent.perception(mb["obs"] / 255.0)
    _, newlogprob, entropy, newvalue = agent.follow(features, mb["actions"])
    loss, stats = ppo_loss(newlogprob, entropy, newvalue, mb, args)

    follower_optimizer.zero_grad()
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(agent.follower_parameters(), args.max_grad_norm)
    follower_optimizer.step()
    return stats | {"follower_grad_norm": grad_norm}


# The statistics of ppo_loss, logged as losses/*: what the stages return beyond them is SPRIG's, logged as sprig/*.
PPO_LOSS_STATS = ["policy_loss", "value_loss", "entropy", "old_approx_kl", "approx_kl", "clipfrac"]


def to_host(minibatch_stats):
    """The update's statistics, a dict of scalar tensors per minibatch, as {name: float64 array over the minibatches}.

    One device-to-host copy per iteration: on a GPU, each .item() per minibatch would wait for the GPU to finish.
    """
    names = list(minibatch_stats[0])
    table = torch.stack([torch.stack([stats[name] for name in names]) for stats in minibatch_stats])  # (minibatches, stats)
    return dict(zip(names, table.double().cpu().numpy().T))


def main():
    args, checkpoint = parse_args()  # tyro's Args; --resume reads the checkpoint's flags; one clear line per mistake
    args.batch_size = int(args.num_envs * args.num_steps)
    args.minibatch_size = int(args.batch_size // args.num_minibatches)
    args.num_iterations = args.total_timesteps // args.batch_size
    # The run machinery at the end of this file: run name and directory (a resumed run keeps its own), TensorBoard
    # (and W&B under --track), the device, checkpoints, Ctrl-C, the divergence guard, timing, the progress line and
    # evaluation, each reached by one call below.
    run = RunControl(args, checkpoint)
    writer, device = run.writer, run.device

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic

    if args.eval_checkpoint is not None:  # play a saved agent instead of training one
        return run.evaluate_saved_agent()

    # env setup
    envs = make_envs(args, run.name, run.wrap_env)
    assert isinstance(envs.single_action_space, gym.spaces.Discrete), "only discrete action space is supported"

    agent = Agent(envs.single_action_space.n, args.perception).to(device)
    if args.update == "stackelberg":
        # Two players, two optimisers over disjoint parameter sets: theta (perception) and phi (policy and value).
        optimizers = {
            "leader_optimizer": optim.Adam(agent.leader_parameters(), lr=args.learning_rate, eps=1e-5),
            "follower_optimizer": optim.Adam(agent.follower_parameters(), lr=args.learning_rate, eps=1e-5),
        }
    else:  # --update joint, the architecture control (joint_step, after main): PPO's one optimiser over theta and phi
        optimizers = {"joint_optimizer": optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)}

    def update(mb):
        """Algorithm 1's update on one minibatch: the Leader (Perception) Stage moves theta, then the Follower (Policy)
        Stage moves phi on the features of the new theta. Returns the statistics of both as tensors."""
        if args.update == "stackelberg":
            stats = leader_step(agent, optimizers["leader_optimizer"], mb, args)  # the leader commits first ...
            return stats | follower_step(agent, optimizers["follower_optimizer"], mb, args)  # ... then the follower responds
        return joint_step(agent, optimizers["joint_optimizer"], mb, args)  # --update joint (after main): one PPO step

    # ALGO Logic: Storage setup
    # Observations stay uint8 (4x smaller) until a network divides them by 255.
    obs = torch.zeros((args.num_steps, args.num_envs) + envs.single_observation_space.shape, dtype=torch.uint8).to(device)
    actions = torch.zeros((args.num_steps, args.num_envs) + envs.single_action_space.shape).to(device)
    logprobs = torch.zeros((args.num_steps, args.num_envs)).to(device)
    rewards = torch.zeros((args.num_steps, args.num_envs)).to(device)
    dones = torch.zeros((args.num_steps, args.num_envs)).to(device)
    values = torch.zeros((args.num_steps, args.num_envs)).to(device)

    run.begin(agent, optimizers, envs)  # what checkpoints save; from here Ctrl-C and SIGTERM stop with a checkpoint
    # TRY NOT TO MODIFY: start the game
    global_step = 0
    start_time = time.time()
    next_obs, _ = envs.reset(seed=args.seed)
    next_obs = torch.as_tensor(next_obs).to(device)
    next_done = torch.zeros(args.num_envs).to(device)
    start_iteration = 1
    if args.resume is not None:  # go on as the checkpoint left agent, optimisers, envs, RNGs and step
        start_iteration, global_step, next_obs, next_done = run.resume()
    start_step = global_step  # charts/SPS counts the steps of this process
    # The loop's two hot calls: under --cudagraphs the run machinery captures each once in a CUDA graph and replays
    # it; otherwise they are these functions themselves.
    policy, update_minibatch = run.graphed(agent.get_action_and_value, update)
    for iteration in range(start_iteration, args.num_iterations + 1):
        # Annealing the rate if instructed to do so.
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            lrnow = frac * args.learning_rate
            for optimizer in optimizers.values():  # the leader's and the follower's (under --update joint, the one)
                optimizer.param_groups[0]["lr"] = lrnow

        for step in range(0, args.num_steps):
            global_step += args.num_envs
            obs[step] = next_obs
            dones[step] = next_done

            # ALGO LOGIC: action logic
            with run.timer("inference"), torch.inference_mode():
                action, logprob, _, value = policy(next_obs)
                values[step] = value.flatten()
            actions[step] = action
            logprobs[step] = logprob

            # TRY NOT TO MODIFY: execute the game and log data.
            with run.timer("env"):
                next_obs, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
            next_done = np.logical_or(terminations, truncations)
            rewards[step] = torch.tensor(reward).to(device).view(-1)
            # A truncated episode did not end in the MDP: bootstrap its last reward with the value of the final
            # observation (same-step autoreset keeps it in infos["final_obs"]) instead of treating it as a death.
            truncated_only = np.flatnonzero(truncations & ~terminations)
            if len(truncated_only) > 0:
                final_obs = torch.as_tensor(np.stack(infos["final_obs"][truncated_only])).to(device)
                with torch.inference_mode():
                    rewards[step, truncated_only] += args.gamma * agent.get_value(final_obs).flatten()
            next_obs, next_done = torch.as_tensor(next_obs).to(device), torch.Tensor(next_done).to(device)

            for _, episodic_return, episodic_length in finished_episodes(infos):
                run.record_episode(episodic_return)  # for the progress line
                writer.add_scalar("charts/episodic_return", episodic_return, global_step)
                writer.add_scalar("charts/episodic_length", episodic_length, global_step)

        # bootstrap value if not done
        with torch.no_grad():
            next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages, returns = compute_gae(rewards, values, dones, next_value, next_done, args.gamma, args.gae_lambda)

        # flatten the batch
        b_obs = obs.reshape((-1,) + envs.single_observation_space.shape)
        b_logprobs = logprobs.reshape(-1)
        b_actions = actions.reshape((-1,) + envs.single_action_space.shape)
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_values = values.reshape(-1)

        # Optimizing the policy and value network
        b_inds = np.arange(args.batch_size)
        minibatch_stats = []
        with run.timer("update"):
            for epoch in range(args.update_epochs):
                np.random.shuffle(b_inds)
                for start in range(0, args.batch_size, args.minibatch_size):
                    end = start + args.minibatch_size
                    mb_inds = b_inds[start:end]
                    mb_advantages = b_advantages[mb_inds]
                    if args.norm_adv:
                        mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)

                    mb = {
                        "obs": b_obs[mb_inds],
                        "actions": b_actions.long()[mb_inds],
                        "logprobs": b_logprobs[mb_inds],
                        "advantages": mb_advantages,
                        "returns": b_returns[mb_inds],
                        "values": b_values[mb_inds],
                    }
                    stats = update_minibatch(mb)  # the leader's stage, then the follower's (Algorithm 1; update, above)
                    minibatch_stats.append(stats)

                if args.target_kl is not None and stats["approx_kl"] > args.target_kl:
                    break
        iteration_stats = to_host(minibatch_stats)  # {name: one value per minibatch}, copied off the GPU once
        run.check_divergence(iteration, iteration_stats)  # a NaN or inf stops the run here, before it is logged or saved

        y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y

        # TRY NOT TO MODIFY: record rewards for plotting purposes
        sps = int((global_step - start_step) / (time.time() - start_time))
        # CleanRL's chart shows the first player's rate (theta's, or under --update joint the one); sprig/* each's
        first_player = next(iter(optimizers.values()))
        writer.add_scalar("charts/learning_rate", first_player.param_groups[0]["lr"], global_step)
        for name in ("value_loss", "policy_loss", "entropy", "old_approx_kl", "approx_kl"):  # the last minibatch's
            writer.add_scalar(f"losses/{name}", iteration_stats[name][-1], global_step)
        writer.add_scalar("losses/clipfrac", iteration_stats["clipfrac"].mean(), global_step)
        writer.add_scalar("losses/explained_variance", explained_var, global_step)
        writer.add_scalar("charts/SPS", sps, global_step)
        # SPRIG's game: each optimiser's rate (sprig/leader_learning_rate, ...), and what the stages report beyond
        # ppo_loss's statistics, averaged over the iteration's minibatches (the grad norms before clipping)
        for name, optimizer in optimizers.items():
            player = name.removesuffix("_optimizer")
            writer.add_scalar(f"sprig/{player}_learning_rate", optimizer.param_groups[0]["lr"], global_step)
        for name in [name for name in iteration_stats if name not in PPO_LOSS_STATS]:
            writer.add_scalar(f"sprig/{name}", iteration_stats[name].mean(), global_step)
        run.log_attention(iteration, global_step, obs)  # every --log-attention-every iterations: env 0's frames and masks
        # perf/* times, the progress line, --checkpoint-every; after Ctrl-C: a checkpoint, then exit
        run.end_iteration(iteration, global_step, sps, next_obs, next_done)

    run.finish()  # --save-model, --eval-episodes, close envs and logs


# =====================================================================================================================
# Optional variants of the algorithm, off by default. main() above is Algorithm 1; each of these changes one piece of
# it, and a first reading may skip them: --update joint (the architecture control), --perception nature (the game on
# PPO's CNN), --perception attention-scaled (SPRIG's network with its features at the CNN's scale) and
# --leader-gradient implicit.
# =====================================================================================================================

# --update joint, the architecture control (docs/design.md, "The architecture control"). SPRIG changes two things of
# PPO at once: the network (attention blocks instead of the Nature CNN) and the update (the leader's and the follower's
# stages). joint keeps the network and drops the game, training it exactly as ppo_atari.py trains its CNN: PPO against
# joint measures the network, joint against SPRIG the game.


def joint_step(agent, optimizer, mb, args):
    """One PPO step on theta and phi together, as ppo_atari.py's ppo_step: one forward pass, the loss of ppo_loss, one
    clip of the grad norm over all parameters, one optimiser. No leader stage and no C_theta in the loss; the cost and
    the masks are still reported, to show what the masks do when nothing prices them. Returns the statistics as tensors.
    """
    features, masks = agent.perception(mb["obs"] / 255.0)
    _, newlogprob, entropy, newvalue = agent.follow(features, mb["actions"])
    loss, stats = ppo_loss(newlogprob, entropy, newvalue, mb, args)
    stats["feature_norm"] = features.detach().norm(dim=1).mean()  # as leader_step reports it

    optimizer.zero_grad()
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
    optimizer.step()
    if masks:  # SPRIG's network (ppo_atari.py's CNN, --perception nature, has none)
        stats["attention_cost"] = attention_cost(masks, args.attn_cost_coef).detach()
        stats |= {f"mask_mean_block{k}": mask.mean().detach() for k, mask in enumerate(masks, start=1)}
    return stats | {"grad_norm": grad_norm}


# --perception nature, the fourth cell (docs/design.md, "The game on PPO's CNN"). PPO and SPRIG differ in the network
# and in the update; --update joint is SPRIG's network under PPO's update, and this is SPRIG's game on PPO's network:
# the leader theta is ppo_atari.py's Nature CNN, with its layers and its initialisation, the follower phi the same two
# heads, both stages unchanged. The CNN has no masks, so C_theta = 0 and u_L = (1 - alpha) u_F: the leader ascends
# the follower's own objective. Adam divides each step by the gradient's running scale, so the factor (1 - alpha)
# changes the leader's step only against Adam's eps: alpha all but drops out.


class NatureCNN(nn.Module):
    """ppo_atari.py's encoder as the leader: three convolutions and Linear 3136 -> 512, each followed by a ReLU, with
    ppo_atari.py's initialisation (from the same seed, the same values). Returns the features and no masks. Its
    weights and inputs are channels-last, as in ppo_atari.py: the same function, faster on CPU."""

    def __init__(self):
        super().__init__()
        self.network = nn.Sequential(
            layer_init(nn.Conv2d(4, 32, 8, stride=4)),
            nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)),
            nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)),
            nn.ReLU(),
            nn.Flatten(),
            layer_init(nn.Linear(64 * 7 * 7, 512)),
            nn.ReLU(),
        )
        self.to(memory_format=torch.channels_last)

    def forward(self, x):
        return self.network(x.contiguous(memory_format=torch.channels_last)), []


# --perception attention-scaled (docs/design.md, "The scale of the features"). SPRIG's network puts its features at
# about ten times the Nature CNN's scale: LayerNorm sets each block's activations at unit scale, where the CNN's, on
# frames scaled by 1/255 (mostly dark: BeamRider's RMS pixel is 0.14), stay at the pixels' scale. Adam moves each
# weight of the heads by about the learning rate per step, so heads that read features ten times larger move their
# logits about ten times as far: the same learning rate acts as a ten times larger one. This reading keeps every
# component and changes one initial value: the last LayerNorm's gain starts at 0.1 instead of 1, so f_theta starts
# at the CNN's scale (mean norm 2.0 against the CNN's 2.2 on the same 1,024 BeamRider frames, 23.4 with gain 1). The
# gain is one number per activation that Adam moves by about the learning rate per step, so, unlike a smaller initial
# weight in the 3136 -> 512 projection (whose entries would be 40x smaller still), it holds that scale through the
# first updates; training then grows it (sprig/feature_norm shows how far).
SCALED_FINAL_NORM_GAIN = 0.1


# --leader-gradient implicit (docs/design.md, "The implicit leader gradient"). Algorithm 1 moves theta along
# d u_L/d theta with phi held fixed: alternating gradient play, in which the leader never anticipates the follower.
# A Stackelberg leader follows the total derivative through the follower's best response phi*(theta) (implicit
# function theorem; Fiez, Chasnov, Ratliff, ICML 2020):
#     d u_L/d theta = d u_L/d theta|phi + (d2 u_F/d theta d phi) w,   (H + lambda I) w = d u_L/d phi,   H = -d2 u_F/d phi2


def conjugate_gradient(hessian_vector_product, b, iterations):
    """Solve H w = b by conjugate gradient, H known only through products H v. Stops early where the residual vanishes
    or the curvature along the search direction is not positive (p^T H p <= 0: H is not positive definite there and a
    step along p would grow without bound). Returns (w, the relative residual |b - H w| / |b|)."""
    w = torch.zeros_like(b)
    residual, direction = b.clone(), b.clone()
    squared = residual @ residual
    for _ in range(iterations):
        product = hessian_vector_product(direction)
        curvature = direction @ product
        if squared == 0 or curvature <= 0:
            break
        step = squared / curvature
        w = w + step * direction
        residual = residual - step * product
        squared, previous = residual @ residual, squared
        direction = residual + (squared / previous) * direction
    return w, residual.norm() / b.norm().clamp_min(1e-30)


def implicit_term(leader_phi_gradient, u_ppo_fixed, u_ppo_live, leader_params, follower_blocks, args):
    """The implicit part of the leader's total derivative, (d2 u_F/d theta d phi) w, one tensor per leader parameter,
    and the conjugate gradient's largest relative residual.

    w solves (H + lambda I) w = d u_L/d phi (leader_phi_gradient, one tensor per follower parameter), H = -d2 u/d phi2
    of the follower's own PPO objective u with theta held fixed (u_ppo_fixed), block by block: u does not couple the
    policy head with the value head, so H has one block per head and each is solved on its own (the value block is
    quadratic, positive semi-definite, and solved to its residual; negative curvature in the policy block stops only that
    block's solve). The cross term is the theta-gradient of <d u/d phi, w> with w held fixed, on u_ppo_live (the same
    objective with theta's graph).
    """
    w, residuals, b_parts = [], [], iter(leader_phi_gradient)
    for block in follower_blocks:
        b = torch.cat([next(b_parts).flatten() for _ in block])
        gradient = torch.cat([g.flatten() for g in torch.autograd.grad(u_ppo_fixed, block, create_graph=True)])

        def hessian_vector_product(v, gradient=gradient, block=block):
            # (H + lambda I) v = -d<d u_F/d phi, v>/d phi + lambda v: two passes through one head
            second = torch.autograd.grad(gradient @ v, block, retain_graph=True)
            return -torch.cat([s.flatten() for s in second]) + args.implicit_damping * v

        w_block, residual = conjugate_gradient(hessian_vector_product, b, args.implicit_cg_iters)
        w += list(torch.split(w_block, [p.numel() for p in block]))
        residuals.append(residual)
    follower_params = [p for block in follower_blocks for p in block]
    live_gradient = torch.autograd.grad(u_ppo_live, follower_params, create_graph=True)
    cross = sum((g * w_p.view_as(g)).sum() for g, w_p in zip(live_gradient, w))
    term = torch.autograd.grad(cross, leader_params, allow_unused=True, materialize_grads=True)  # unused: zeros
    return list(term), torch.stack(residuals).max()


def implicit_leader_gradient(agent, features, mb, u_leader, args):
    """Set theta's .grad to -(d u_L/d theta), the leader's total derivative: the direct part (phi held fixed) plus the
    implicit part through the follower's response, scaled down to at most --implicit-max-ratio times the direct
    part's norm. Returns the implicit part's statistics.

    The minibatch is split in halves: w (d u_L/d phi and H) comes from the first, the cross term from the second.
    From the same samples, the noise in d u_F/d phi would multiply itself and reward the leader for inflating the
    follower's gradient rather than for helping it.
    """
    leader_params, follower_params = agent.leader_parameters(), agent.follower_parameters()
    half = len(mb["obs"]) // 2
    first = {name: value[:half] for name, value in mb.items()}
    second = {name: value[half:] for name, value in mb.items()}
    # d u_L/d phi on the first half, features fixed. C_theta does not depend on phi: it is (1 - alpha) d u_F/d phi.
    u_ppo, u_policy = follower_utilities(agent, features[:half].detach(), first, args)
    u_follower = u_ppo if args.leader_utility == "follower" else u_policy
    leader_phi_gradient = torch.autograd.grad(  # under pg the value head is unused: its gradient is zeros
        (1 - args.alpha_coop) * u_follower, follower_params, retain_graph=True, allow_unused=True, materialize_grads=True
    )
    direct = torch.autograd.grad(u_leader, leader_params, retain_graph=True)
    u_ppo_live, _ = follower_utilities(agent, features[half:], second, args)
    heads = [list(agent.actor.parameters()), list(agent.critic.parameters())]
    implicit, residual = implicit_term(leader_phi_gradient, u_ppo, u_ppo_live, leader_params, heads, args)
    direct_norm, implicit_norm = nn.utils.get_total_norm(direct), nn.utils.get_total_norm(implicit)
    # A lookahead through a damped, possibly indefinite Hessian can dwarf the leader's own gradient: bound it.
    scale = torch.clamp(args.implicit_max_ratio * direct_norm / implicit_norm.clamp_min(1e-30), max=1.0)
    for parameter, direct_part, implicit_part in zip(leader_params, direct, implicit):
        parameter.grad = -(direct_part + scale * implicit_part)
    ratio = implicit_norm / direct_norm.clamp_min(1e-30)
    return {"implicit_grad_norm": implicit_norm, "implicit_direct_ratio": ratio, "cg_residual": residual}


# =====================================================================================================================
# Run machinery: everything below serves the run, not the algorithm, and a reader may skip it. The command line's
# checks, checkpoints (with the envs' exact state) and --resume, Ctrl-C, the divergence guard, evaluation, timing, the
# progress line and CUDA graphs; main() reaches it through parse_args() and the RunControl object at the end.
# =====================================================================================================================

SCRIPT = os.path.basename(__file__)
# The cores this run may use: OMP_NUM_THREADS where it is set (benchmark.sh --workers splits the machine that way),
# else every core this process may run on. It decides whether the envs step in subprocesses by default.
CORES = int(os.environ["OMP_NUM_THREADS"]) if os.environ.get("OMP_NUM_THREADS", "").isdigit() else len(os.sched_getaffinity(0))


def parse_args():
    """The command line as Args, checked; with --resume, the checkpoint's flags fill in those not given. Returns
    (args, checkpoint): the checkpoint --resume goes on from, read and checked, else None. Every mistake is one line,
    before anything is built or written: --eval-checkpoint's file is read and checked here too (and read again to
    play it)."""
    args = command_line(default=Args(async_envs=CORES >= 8))
    checkpoint = None
    if args.resume is not None:
        checkpoint = check_checkpoint(load_torch_file(args.resume, "--resume"), args.resume, "--resume")
        args = args_for_resume(checkpoint, args.resume)
    check_args(args)
    if args.eval_checkpoint is not None:
        load_agent_state(args.eval_checkpoint)
    return args, checkpoint


def command_line(default):
    """tyro.cli(Args) with these defaults; a usage mistake (an unknown flag, a value of the wrong type or not among
    the choices) is one line instead of tyro's framed message. tyro prints that message and exits, so the mistake is read
    off the printed text: tests/test_cli_errors.py pins each kind's exact line and fails if a tyro upgrade changes it."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return tyro.cli(Args, default=default)
    except SystemExit as exit:
        if not exit.code:
            raise
        # tyro's message, framed or not: a title, (a rule,) the mistake, a rule, help. The mistake is what we keep.
        lines = [line.strip("\u2502\u256d\u256e\u2570\u256f ") for line in captured.getvalue().splitlines() if line.strip()]
        is_rule = [not line.strip("-\u2500") for line in lines]
        start = next((n for n in range(1, len(lines)) if not is_rule[n]), len(lines))
        end = next((n for n in range(start, len(lines)) if is_rule[n]), len(lines))
        raise SystemExit(f"error: {' '.join(' '.join(lines[start:end]).split())}") from None


# What each numeric flag must be, and the test of it; None, an optional flag left unset, always passes.
FLAG_RANGES = {
    "positive": (
        lambda value: value > 0,
        ["total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs", "max_episode_steps", "stop_at_step"]
        + ["learning_rate", "clip_coef", "max_grad_norm", "target_kl"]
        + ["implicit_cg_iters"],
    ),
    "non-negative": (
        lambda value: value >= 0,
        ["ent_coef", "vf_coef", "checkpoint_every", "eval_episodes"]
        + ["attn_cost_coef", "log_attention_every"]
        + ["implicit_damping", "implicit_max_ratio"],
    ),
    "in [0, 1]": (lambda value: 0 <= value <= 1, ["gamma", "gae_lambda", "repeat_action_probability", "alpha_coop"]),
}

# The flags only the leader stage reads: --update joint has no leader stage, so a value given to one is a mistake.
LEADER_FLAGS = [
    "alpha_coop",
    "leader_utility",
    "leader_gradient",
    "implicit_damping",
    "implicit_cg_iters",
    "implicit_max_ratio",
]


def check_args(args: Args) -> None:
    """Reject bad input with one clear line before any environment or network is built."""

    def fail(message: str) -> None:
        raise SystemExit(f"error: {message}")

    if args.env_id not in gym.envs.registry:
        close = difflib.get_close_matches(args.env_id, list(gym.envs.registry), n=3, cutoff=0.6)
        fail(f"unknown --env-id {args.env_id!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    if gym.spec(args.env_id).entry_point != "ale_py.env:AtariEnv":
        fail(f"--env-id {args.env_id} is not an Atari game: this script trains on ale-py's, e.g. ALE/BeamRider-v5")
    for requirement, (holds, names) in FLAG_RANGES.items():
        for name in names:
            value = getattr(args, name)
            if value is not None and not holds(value):
                fail(f"--{name.replace('_', '-')} must be {requirement}, got {value}")
    batch_size = args.num_envs * args.num_steps
    if batch_size % args.num_minibatches != 0:
        fail(
            f"batch size {batch_size} (--num-envs {args.num_envs} x --num-steps {args.num_steps}) "
            f"is not divisible by --num-minibatches {args.num_minibatches}"
        )
    if args.total_timesteps < batch_size:
        fail(f"--total-timesteps {args.total_timesteps} is smaller than one batch ({batch_size} steps)")
    ignored = [f"--{name.replace('_', '-')}" for name in LEADER_FLAGS if getattr(args, name) != getattr(Args, name)]
    if args.update == "joint" and ignored:
        fail(f"--update joint has no leader stage, so {', '.join(ignored)} would change nothing; leave them out")
    if args.perception == "nature" and args.attn_cost_coef != Args.attn_cost_coef:
        fail("--perception nature has no attention masks to price, so --attn-cost-coef would change nothing; leave it out")
    if args.perception == "nature" and args.log_attention_every > 0:
        fail("--perception nature has no attention masks to draw; leave out --log-attention-every")
    if args.cudagraphs and not args.cuda:
        fail("--cudagraphs captures CUDA graphs: it needs --cuda, not --no-cuda")
    if args.cudagraphs and not torch.cuda.is_available():
        fail("--cudagraphs captures CUDA graphs: it needs a CUDA device, and torch finds none here")
    if args.eval_checkpoint is not None and args.eval_episodes == 0:
        fail("--eval-checkpoint needs --eval-episodes N (N > 0 games to play)")
    if args.eval_checkpoint is not None and args.resume is not None:
        fail("--eval-checkpoint evaluates without training; it cannot be combined with --resume")
    if args.capture_video:
        try:
            import moviepy  # noqa: F401  (gymnasium's RecordVideo writes mp4 with it)
        except ImportError:
            fail("--capture-video needs moviepy: pip install moviepy")


# Flags that do not change what is learned: they may differ between a run and its resume.
RESUME_FREE_FLAGS = {"track", "wandb_project_name", "wandb_entity", "capture_video", "resume"}
RESUME_FREE_FLAGS |= {"cuda", "cudagraphs", "async_envs"}
RESUME_FREE_FLAGS |= {"checkpoint_every", "save_model", "eval_episodes", "eval_checkpoint", "stop_at_step"}


def args_for_resume(checkpoint, resume):
    """Parse the command line again with the checkpoint's flags as defaults: flags not given continue the run as it
    was; flags given must agree with the checkpoint, except those that do not change what is learned."""
    saved = {name: value for name, value in checkpoint["args"].items() if name in {field.name for field in fields(Args)}}
    saved.update(resume=resume, eval_checkpoint=None, stop_at_step=None)  # a paused run goes on unless told to stop
    saved.setdefault("leader_utility", "pg")  # checkpoints from before --leader-utility trained with the printed form
    saved.setdefault("leader_gradient", "direct")  # and those from before --leader-gradient with the direct one
    saved.setdefault("update", "stackelberg")  # and those from before --update played the game
    saved.setdefault("perception", "attention")  # and those from before --perception had the attention blocks
    saved["async_envs"] = CORES >= 8  # how the envs step changes no result: this machine's default, unless given
    # Nor do CUDA graphs: a graphed run goes on graphed where CUDA is, eagerly elsewhere (--no-cudagraphs: eagerly here)
    saved["cudagraphs"] = saved.get("cudagraphs", False) and torch.cuda.is_available()
    args = command_line(default=Args(**saved))
    differ = [
        f"--{name.replace('_', '-')} (checkpoint {saved[name]}, now {getattr(args, name)})"
        for name in saved
        if name not in RESUME_FREE_FLAGS and getattr(args, name) != saved[name]
    ]
    if differ:
        raise SystemExit(f"error: --resume: these flags differ from the checkpoint: {', '.join(differ)}")
    return args


# The per-step state of make_env's wrappers (gymnasium 1.x attribute names); the rest of them is settings.
# FireReset and ClipReward keep none; RecordEpisodeStatistics' start time only feeds the info's wall-clock "t".
WRAPPER_STATE = {
    gym.wrappers.FrameStackObservation: ["obs_queue"],  # the last 4 frames
    EpisodicLife: ["lives", "real_done"],
    gym.wrappers.AtariPreprocessing: ["obs_buffer", "lives", "game_over"],  # the 2 raw frames max-pooled, lives
    gym.wrappers.RecordEpisodeStatistics: ["episode_returns", "episode_lengths"],  # the raw score so far
    gym.wrappers.TimeLimit: ["_elapsed_steps"],
}


def to_saveable(value):
    """numpy arrays to tensors, numpy scalars and sequences to python ones: what torch.load(weights_only=True) reads."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, (list, tuple, deque)):
        return [to_saveable(item) for item in value]
    if isinstance(value, dict):
        return {key: to_saveable(item) for key, item in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def from_saveable(saved):
    """The inverse of to_saveable: tensors back to numpy arrays."""
    if isinstance(saved, torch.Tensor):
        return saved.numpy().copy()
    if isinstance(saved, list):
        return [from_saveable(item) for item in saved]
    if isinstance(saved, dict):
        return {key: from_saveable(item) for key, item in saved.items()}
    return saved


class EnvState(gym.Wrapper):
    """The outermost wrapper, for checkpoints only: its `env_state` reads or restores everything that decides what the
    env does next. The vector env reaches it with get_attr and set_attr, which run in the env's own process, so
    checkpoints are exact whether the envs step here or in subprocesses (--async-envs).

    The state: the emulator with its RNG (ALE's clone_state(include_rng=True)), the env's np_random (it draws the no-op
    starts) and each wrapper's per-step state (WRAPPER_STATE), outermost first.
    """

    @property
    def env_state(self):
        wrappers, layer = [], self.env
        while isinstance(layer, gym.Wrapper):
            wrappers.append({name: getattr(layer, name) for name in WRAPPER_STATE.get(type(layer), [])})
            layer = layer.env
        emulator = self.unwrapped.clone_state(include_rng=True).__getstate__()  # bytes
        return {
            "wrappers": wrappers,
            "emulator": np.frombuffer(emulator, dtype=np.uint8),
            "np_random": self.unwrapped.np_random.bit_generator.state,
        }

    @env_state.setter
    def env_state(self, state):
        layer = self.env
        for saved in state["wrappers"]:
            for name, value in saved.items():
                current = getattr(layer, name)  # a deque keeps its maxlen
                setattr(layer, name, deque(value, maxlen=current.maxlen) if isinstance(current, deque) else value)
            layer = layer.env
        self.unwrapped.restore_state(ale_py.ALEState(state["emulator"].tobytes()))
        self.unwrapped.np_random.bit_generator.state = state["np_random"]


# Checkpoints. A checkpoint is written only at an iteration boundary, so a resumed run redoes exactly what the
# uninterrupted one did next; it holds tensors and python values only, for torch.load(weights_only=True).


def get_rng_state():
    """Python's, numpy's and torch's global RNG states."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state):
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path, checkpoint):
    """Write to a temporary file in the same directory, then rename it: a kill mid-write keeps the last good one."""
    torch.save(checkpoint, f"{path}.tmp")
    os.replace(f"{path}.tmp", path)


def load_torch_file(path, flag):
    """torch.load(weights_only=True) of a file named on the command line, or one clear error line."""
    if not os.path.isfile(path):
        raise SystemExit(f"error: {flag}: no such file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exception:
        raise SystemExit(
            f"error: {flag}: cannot read {path} ({type(exception).__name__}): truncated, or not written by {SCRIPT}"
        ) from None


def perception_of(state):
    """The --perception of an Agent's state_dict, by its tensor names: NatureCNN's are perception.network.*."""
    return "nature" if any(name.startswith("perception.network.") for name in state) else "attention"


def fits_agent(state):
    """Whether state is a state_dict of this script's Agent: the same tensor names and shapes, for any action count and
    either --perception."""
    if not isinstance(state, dict) or not isinstance(state.get("actor.weight"), torch.Tensor):
        return False
    expected = Agent(state["actor.weight"].shape[0], perception_of(state)).state_dict()
    return set(state) == set(expected) and all(state[name].shape == tensor.shape for name, tensor in expected.items())


def check_checkpoint(checkpoint, path, flag):
    if not isinstance(checkpoint, dict) or "script" not in checkpoint:
        raise SystemExit(f"error: {flag}: {path} is not a training checkpoint (a checkpoint.pt of --checkpoint-every)")
    if checkpoint["script"] != SCRIPT:
        raise SystemExit(f"error: {flag}: {path} is a checkpoint of {checkpoint['script']}, not of {SCRIPT}")
    if not fits_agent(checkpoint.get("agent")):
        raise SystemExit(f"error: {flag}: {path} holds a network of another shape (written by another version of {SCRIPT}?)")
    return checkpoint


def load_agent_state(path, flag="--eval-checkpoint"):
    """The agent's state_dict from a .cleanrl_model or a checkpoint.pt of this script, or one clear error line."""
    loaded = load_torch_file(path, flag)
    if isinstance(loaded, dict) and "script" in loaded:
        return check_checkpoint(loaded, path, flag)["agent"]
    if not fits_agent(loaded):
        raise SystemExit(f"error: {flag}: {path} is not a model of this version of {SCRIPT} (not its Agent)")
    return loaded


def agent_from_state(state):
    """The Agent of a state_dict that fits_agent accepted, on the CPU."""
    agent = Agent(state["actor.weight"].shape[0], perception_of(state))
    agent.load_state_dict(state)
    return agent


def load_agent(path, flag="--eval-checkpoint"):
    """The Agent saved in a .cleanrl_model or a checkpoint.pt of this script (on the CPU), or one clear error line."""
    return agent_from_state(load_agent_state(path, flag))


# How a run ends, by exit status (see the module docstring): 0 it finished; these two, it stopped early with its
# checkpoint written, to be resumed; any other, it failed.
EXIT_INTERRUPTED = 3  # SIGINT or SIGTERM: the iteration finished and was checkpointed (GracefulStop)
EXIT_PAUSED = 4  # --stop-at-step reached, checkpointed, on the schedule of --total-timesteps (RunControl.pause)


class GracefulStop:
    """SIGINT and SIGTERM set `requested` instead of killing the run: the run finishes its iteration, writes a
    checkpoint of that iteration's end and exits EXIT_INTERRUPTED (RunControl.end_iteration), so nothing is saved
    half-done. A second SIGINT (Ctrl-C again) stops at once, without a checkpoint (the last one written stays intact).
    A second SIGTERM changes nothing: a scheduler sends it to every process of a job, the job's shell passes it on
    too, and a stop already asked for must not lose its checkpoint to the repeat."""

    def __init__(self):
        self.requested = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.request)

    def request(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise SystemExit("error: interrupted twice: stopped at once, without writing a checkpoint")
        if self.requested:
            return
        self.requested = True
        # Straight to the file descriptor: a print here could land inside the loop's own print and raise.
        os.write(2, b"stopping: this iteration finishes, then a checkpoint is written (Ctrl-C again to stop at once)\n")

    def release(self):
        """Give the signals their usual meaning back: after training, Ctrl-C stops saving or evaluating at once."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def find_divergence(stats, agent):
    """The first NaN or inf among the last minibatch's statistics (losses, grad norms) and the parameters, named; else
    None. stats: to_host's {name: one value per minibatch}."""
    for name, values in stats.items():
        if not math.isfinite(values[-1]):
            return f"{name} of the last minibatch is {values[-1]}"
    for name, parameter in agent.named_parameters():
        if not torch.isfinite(parameter).all():
            return f"parameter {name} is {'nan' if parameter.isnan().any() else 'inf'}"
    return None


def evaluate(agent, args, device, episodes, watch=None):
    """The raw scores of `episodes` full games on one env seeded with args.seed, actions sampled as CleanRL's eval does.

    make_env's chain as in training: EpisodicLife ends the learner's episode at each life lost, but only a real game
    over (or --max-episode-steps) reports episode statistics, and RecordEpisodeStatistics sees unclipped rewards.
    `watch(obs)`, if given, sees each observation (a (1, 4, 84, 84) uint8 tensor) before the agent acts on it.
    """
    envs = make_envs(replace(args, num_envs=1, async_envs=False, capture_video=False), "eval")
    if envs.single_action_space.n != agent.actor.out_features:
        raise SystemExit(
            f"error: the model has {agent.actor.out_features} actions, {args.env_id} {envs.single_action_space.n}"
        )
    torch.manual_seed(args.seed)
    obs, _ = envs.reset(seed=args.seed)
    returns = []
    while len(returns) < episodes:
        obs = torch.as_tensor(obs).to(device)
        if watch is not None:
            watch(obs)
        with torch.inference_mode():
            action, _, _, _ = agent.get_action_and_value(obs)
        obs, _, _, _, infos = envs.step(action.cpu().numpy())
        returns += [episodic_return for _, episodic_return, _ in finished_episodes(infos)]
    envs.close()
    return returns[:episodes]


def log_evaluation(returns, writer):
    for episode, episodic_return in enumerate(returns):
        writer.add_scalar("eval/episodic_return", episodic_return, episode)
    print(f"eval: {np.mean(returns):.1f} ± {np.std(returns):.1f} over {len(returns)} episodes", flush=True)


def format_seconds(seconds):
    """h:mm:ss, rounded to the second."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def attention_overlays(frames, masks):
    """Each block's mask upsampled to 84x84 and laid over the frame it saw: (T, 3, 84, 84, 3) RGB uint8.

    frames: (T, 84, 84) uint8, the newest frame of each observation; masks: the three (T, 1, h, w) masks in (0, 1).
    Block k's mask position covers a patch of the frame (its convs' receptive field); bilinear upsampling puts each
    value over the middle of its patch, which is what a reader needs to see where attention goes.
    """
    import matplotlib

    colour_map = matplotlib.colormaps["inferno"]
    grey = torch.as_tensor(frames, dtype=torch.float32).div(255.0).unsqueeze(1).unsqueeze(-1)  # (T, 1, 84, 84, 1)
    upsampled = torch.cat([F.interpolate(mask.float(), size=(84, 84), mode="bilinear") for mask in masks], dim=1)
    colours = torch.as_tensor(colour_map(upsampled.clamp(0, 1).numpy())[..., :3], dtype=torch.float32)  # (T, 3, 84, 84, 3)
    return ((0.4 * grey + 0.6 * colours) * 255).round().to(torch.uint8).numpy()


def attention_figure(frames, masks, steps=None):
    """A grid for people: one row per frame, columns frame | block 1 | block 2 | block 3, with a colour bar.

    Returns the rendered figure as an (H, W, 3) uint8 RGB array, for TensorBoard or a PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = np.asarray(frames)
    overlays = attention_overlays(frames, masks)
    figure, axes = plt.subplots(len(frames), 4, figsize=(8, 2.1 * len(frames)), squeeze=False)
    for row, (frame, overlay) in enumerate(zip(frames, overlays)):
        panels = [frame] + list(overlay)
        titles = ["frame" if steps is None else f"step {steps[row]}"] + [f"mask, block {k}" for k in (1, 2, 3)]
        for axis, panel, title in zip(axes[row], panels, titles):
            axis.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=255)
            axis.set_title(title, fontsize=8)
            axis.axis("off")
    colour_bar = plt.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap="inferno")
    figure.colorbar(colour_bar, ax=axes, fraction=0.03, label="mask m (attended context taken)")
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return image


# CUDA graphs (--cudagraphs). Eager, an update of these small networks is bound by kernel launches, not by the GPU's
# arithmetic: replayed from a graph, an update took a sixth of its eager time on an H200 (docs/speed.md).


def capture_cuda_graph(function, warm_up):
    """Run warm_up() on a side stream, then capture function() whole in a torch.cuda.CUDAGraph. Returns replay(), which
    replays the graph (refilling the tensors function() returned while captured) and returns those tensors."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        warm_up()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = function()

    def replay():
        graph.replay()
        return outputs

    return replay


def map_tensors(function, value, *others):
    """function(tensor, *the tensors at the same place in others) for each tensor of value: a tensor, or a tuple or a
    dict of them, as a value of the same structure."""
    if isinstance(value, torch.Tensor):
        return function(value, *others)
    if isinstance(value, tuple):
        return tuple(map_tensors(function, *items) for items in zip(value, *others))
    return {key: map_tensors(function, item, *(other[key] for other in others)) for key, item in value.items()}


class CudaGraphed:
    """function(inputs), captured whole at its first call by capture(call, warm_up) and replayed from then on.

    inputs, a tensor or a dict of tensors of the same shapes at every call, are copied into the static buffers the
    graph reads; the outputs are cloned, since the next replay overwrites them. Before the capture, function runs three
    times to warm up, and what those calls changed is put back in place (the parameters, the optimisers' moments and
    steps, the RNGs): the warm-up changes nothing that is learned. While function runs, each optimiser reads its rate
    from a tensor that main()'s annealed rate is copied into before every call, and on CUDA Adam is capturable (its
    step count on the GPU). Outside those calls the optimisers are as main() made them, so a checkpoint is the same
    with or without graphs, and each resumes under the other.

    capture is capture_cuda_graph; without a GPU (in tests), a stand-in that warms up and returns function itself
    (replay = call again) runs everything here but the CUDA calls.
    """

    def __init__(self, function, agent, optimizers, capture):
        self.function, self.agent, self.optimizers, self.capture = function, agent, list(optimizers.values()), capture
        # On CUDA Adam computes its capturable step on the GPU in float32; on the CPU it reads the rate as a number,
        # and a float64 rate gives it the steps of a float one, bit for bit.
        device = next(agent.parameters()).device
        dtype = torch.float32 if device.type == "cuda" else torch.float64
        self.rates = [torch.zeros((), dtype=dtype, device=device) for _ in self.optimizers]
        self.inputs, self.replay = None, None

    def __call__(self, inputs):
        for rate, optimizer in zip(self.rates, self.optimizers):
            rate.fill_(optimizer.param_groups[0]["lr"])
        if self.replay is None:
            self.inputs = map_tensors(torch.clone, inputs)
            self.replay = self.capture(self.call, self.warm_up)
        else:
            map_tensors(torch.Tensor.copy_, self.inputs, inputs)
        return map_tensors(torch.clone, self.replay())

    def call(self):
        """function on the static inputs, the optimisers reading their rates from self.rates."""
        groups = [optimizer.param_groups[0] for optimizer in self.optimizers]  # one each, as main() makes them
        saved = [(group["lr"], group["capturable"]) for group in groups]
        for group, rate in zip(groups, self.rates):
            group["lr"], group["capturable"] = rate, rate.is_cuda
        try:
            return self.function(self.inputs)
        finally:
            for group, (lr, capturable) in zip(groups, saved):
                group["lr"], group["capturable"] = lr, capturable

    def state(self):
        """The tensors function may change: the agent's parameters and its optimisers' state."""
        optimizer_state = [
            value for optimizer in self.optimizers for state in optimizer.state.values() for value in state.values()
        ]
        return list(self.agent.parameters()) + [value for value in optimizer_state if isinstance(value, torch.Tensor)]

    @torch.no_grad()
    def warm_up(self):
        """Three calls, then put back what they changed: tensors that existed in place, the optimiser state they created
        zeroed (as Adam creates it), the RNGs."""
        for optimizer in self.optimizers:  # a capturable Adam counts its steps on the GPU (an eager checkpoint's: CPU)
            for parameter, state in optimizer.state.items():
                if "step" in state and parameter.is_cuda:
                    state["step"] = state["step"].to(parameter.device)
        before = [(tensor, tensor.clone()) for tensor in self.state()]
        rng = get_rng_state()
        with torch.enable_grad():
            for _ in range(3):
                self.call()
        existed = {id(tensor) for tensor, _ in before}
        for tensor in self.state():
            if id(tensor) not in existed:
                tensor.zero_()
        for tensor, saved in before:
            tensor.copy_(saved)
        set_rng_state(rng)


class RunControl:
    """What main() needs besides the algorithm, one call each: the run's name, directory, logs and device, resume,
    signals, timing, the divergence guard, the progress line, checkpoints, and the end of the run (saving, evaluation).
    It owns what it opens: the TensorBoard writer (and W&B under --track) from the start, the envs from begin() on."""

    def __init__(self, args, checkpoint):
        """Name the run, open its logs and pick the device. checkpoint: the one --resume goes on from, else None."""
        self.args, self.resume_checkpoint = args, checkpoint  # for resume()
        if args.resume is None:
            self.name = f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
            self.dir = f"runs/{self.name}"
        else:  # the resumed run continues in its own directory
            self.dir = os.path.dirname(args.resume) or "."
            self.name = os.path.basename(os.path.abspath(self.dir))
        self.checkpoint_path = f"{self.dir}/checkpoint.pt"
        if args.track:
            import wandb

            wandb.init(
                project=args.wandb_project_name,
                entity=args.wandb_entity,
                sync_tensorboard=True,
                config=vars(args),
                name=self.name,
                monitor_gym=True,
                save_code=True,
            )
        # On resume, events the killed run logged after its checkpoint are dropped, so no step is logged twice.
        self.writer = SummaryWriter(self.dir, purge_step=None if checkpoint is None else checkpoint["global_step"] + 1)
        if args.resume is None:  # a resumed run has them already
            self.writer.add_text(
                "hyperparameters",
                "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{key}|{value}|" for key, value in vars(args).items()])),
            )
        if args.cuda and not torch.cuda.is_available():
            print("warning: --cuda was requested but CUDA is not available; running on the CPU")
        self.device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
        self.recent_returns = deque(maxlen=20)  # for the progress line
        self.seconds = {"env": 0.0, "inference": 0.0, "update": 0.0}  # where this iteration's time goes: perf/*
        # Given to begin(): what checkpoints save and what the run closes; the Ctrl-C handler.
        self.agent, self.optimizers, self.envs, self.stop = None, None, None, None

    @staticmethod
    def wrap_env(env):
        """make_env's last wrapper, applied in the process that steps the env: EnvState, through which checkpoints read
        and restore it; and, in a subprocess of --async-envs, a process group of its own, so that Ctrl-C (SIGINT to
        the terminal's group) and benchmark.sh's stop (SIGTERM to a run's group) reach only the training process,
        which checkpoints and then closes the env itself."""
        if multiprocessing.parent_process() is not None:
            os.setpgid(0, 0)
        return EnvState(env)

    def evaluate_saved_agent(self):
        """--eval-checkpoint: play --eval-episodes games with the saved agent, log them, and end the run."""
        agent = load_agent(self.args.eval_checkpoint).to(self.device)
        log_evaluation(evaluate(agent, self.args, self.device, self.args.eval_episodes), self.writer)
        self.writer.close()

    def begin(self, agent, optimizers, envs):
        """Start training: keep agent, optimisers (named as in checkpoints) and envs for checkpoints and the end of the
        run, and from here on let Ctrl-C and SIGTERM stop the run with a checkpoint."""
        self.agent, self.optimizers, self.envs = agent, optimizers, envs
        where, other = ("in subprocesses", "--no-async-envs") if self.args.async_envs else ("in this process", "--async-envs")
        print(
            f"envs: {self.args.num_envs} x {self.args.env_id}, stepped {where} "
            f"(cores for this run: {CORES}; {other} to change)",
            flush=True,
        )
        if self.args.perception == "nature":
            print("perception: ppo_atari.py's Nature CNN, no attention masks: C_theta = 0, u_L = (1 - alpha) u_F", flush=True)
        self.stop = GracefulStop()

    def resume(self):
        """--resume: put agent, optimisers, envs, RNGs and the progress line's returns back as the checkpoint left them,
        after the game was started (so the envs can step). Returns (first iteration, global_step, next_obs, next_done)."""
        checkpoint = self.resume_checkpoint
        self.agent.load_state_dict(checkpoint["agent"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(checkpoint[name])
        self.envs.set_attr("env_state", [from_saveable(state) for state in checkpoint["envs"]])
        set_rng_state(checkpoint["rng"])
        self.recent_returns.extend(checkpoint["recent_returns"])
        print(
            f"resumed from {self.args.resume} at iteration {checkpoint['iteration']}, step {checkpoint['global_step']}",
            flush=True,
        )
        if self.pausing(checkpoint["iteration"]):  # resumed with a --stop-at-step it has already reached
            self.pause(checkpoint["global_step"])
        next_obs, next_done = checkpoint["next_obs"].to(self.device), checkpoint["next_done"].to(self.device)
        return checkpoint["iteration"] + 1, checkpoint["global_step"], next_obs, next_done

    def graphed(self, policy, update):
        """--cudagraphs: the rollout's policy and the minibatch update, each to be captured whole in a CUDA graph at its
        first call and replayed after (CudaGraphed); without it, the functions themselves."""
        if not self.args.cudagraphs:
            return policy, update
        # Categorical checks its arguments on the host by default: a sync a graph cannot hold (and 0.6-2 ms an update)
        torch.distributions.Distribution.set_default_validate_args(False)
        policy = CudaGraphed(policy, self.agent, {}, capture_cuda_graph)
        if self.args.leader_gradient == "implicit":  # its conjugate gradient stops on values the host must see
            print("--cudagraphs: the policy is captured; --leader-gradient implicit's update runs eagerly", flush=True)
            return policy, update  # the implicit leader's update, eager
        return policy, CudaGraphed(update, self.agent, self.optimizers, capture_cuda_graph)

    def record_episode(self, episodic_return):
        """Keep a finished episode's return for the progress line's mean of the last 20."""
        self.recent_returns.append(episodic_return)

    @contextlib.contextmanager
    def timer(self, phase):
        """Add the time spent inside the `with` block to this iteration's perf/{phase}_seconds."""
        tick = time.perf_counter()
        yield
        self.seconds[phase] += time.perf_counter() - tick

    def log_attention(self, iteration, global_step, obs):
        """Every --log-attention-every iterations, draw env 0's last four frames with the three blocks' masks to
        TensorBoard (sprig/attention)."""
        every = self.args.log_attention_every
        if every == 0 or iteration % every != 0:
            return
        with torch.no_grad():
            latest = obs[-4:, 0]  # env 0's last four observations, (4, 4, 84, 84)
            _, masks = self.agent.perception(latest / 255.0)
        image = attention_figure(latest[:, -1].cpu(), [mask.cpu() for mask in masks])
        self.writer.add_image("sprig/attention", image, global_step, dataformats="HWC")

    def check_divergence(self, iteration, stats):
        """Stop the run with one line if a statistic of the last minibatch or a parameter is NaN or inf."""
        divergence = find_divergence(stats, self.agent)
        if divergence is not None:  # nothing of this iteration is logged or saved
            self.close()
            last_good = self.checkpoint_path if os.path.exists(self.checkpoint_path) else "none (see --checkpoint-every)"
            raise SystemExit(
                f"error: divergence at iteration {iteration}: {divergence}; the last good checkpoint is {last_good}"
            )

    def end_iteration(self, iteration, global_step, sps, next_obs, next_done):
        """Log perf/*, print the progress line, write the checkpoint every --checkpoint-every iterations; after a
        signal, write it now and exit EXIT_INTERRUPTED, saying how to resume."""
        for name, value in self.seconds.items():
            self.writer.add_scalar(f"perf/{name}_seconds", value, global_step)
            self.seconds[name] = 0.0
        returns = self.recent_returns
        last = self.args.num_iterations
        if self.args.stop_at_step is not None:  # this process trains up to its pause
            last = min(last, -(-self.args.stop_at_step // self.args.batch_size))
        eta = (last - iteration) * self.args.batch_size / max(sps, 1)
        mean_return = f"{np.mean(returns):.1f}" if returns else "n/a"
        print(
            f"iter {iteration}/{self.args.num_iterations} | step {global_step} | SPS {sps} | "
            f"return (last {len(returns)} episodes) {mean_return} | ETA {format_seconds(eta)}",
            flush=True,
        )
        every, pausing = self.args.checkpoint_every, self.pausing(iteration)
        if self.stop.requested or pausing or (every > 0 and iteration % every == 0):
            self.write_checkpoint(iteration, global_step, next_obs, next_done)
        if self.stop.requested:
            self.close()
            print(f"interrupted at step {global_step}; resume with: python {SCRIPT} --resume {self.checkpoint_path}")
            raise SystemExit(EXIT_INTERRUPTED)
        if pausing:
            self.pause(global_step)

    def pausing(self, iteration):
        """Whether --stop-at-step pauses the run after this iteration: it has reached that step and has iterations left
        on the schedule of --total-timesteps."""
        stop = self.args.stop_at_step
        return stop is not None and iteration * self.args.batch_size >= stop and iteration < self.args.num_iterations

    def pause(self, global_step):
        """--stop-at-step: with the checkpoint written, close and exit EXIT_PAUSED, saying how to go on."""
        self.close()
        print(
            f"paused at step {global_step} (--stop-at-step {self.args.stop_at_step}); go on with: python {SCRIPT} "
            f"--resume {self.checkpoint_path}, and a larger --stop-at-step or none",
            flush=True,
        )
        raise SystemExit(EXIT_PAUSED)

    def write_checkpoint(self, iteration, global_step, next_obs, next_done):
        """Everything the next iteration depends on, at this iteration's end: a resumed run goes on exactly as this one."""
        checkpoint = {
            "script": SCRIPT,
            "args": dict(vars(self.args)),
            "iteration": iteration,
            "global_step": global_step,
            "next_obs": next_obs.cpu().clone(),
            "next_done": next_done.cpu().clone(),
            "recent_returns": list(self.recent_returns),
            "rng": get_rng_state(),
            "envs": [to_saveable(state) for state in self.envs.get_attr("env_state")],
            "agent": self.agent.state_dict(),
        }
        save_checkpoint(self.checkpoint_path, checkpoint | {name: each.state_dict() for name, each in self.optimizers.items()})

    def close(self):
        """Release what the run holds: the signal handlers, the envs, the logs."""
        self.stop.release()
        self.envs.close()
        self.writer.close()

    def finish(self):
        """The end of training: --save-model, --eval-episodes, then close (also after a Ctrl-C in between)."""
        self.stop.release()  # from here Ctrl-C stops saving or evaluating at once
        try:
            if self.args.save_model:
                model_path = f"{self.dir}/{self.args.exp_name}.cleanrl_model"
                torch.save(self.agent.state_dict(), model_path)
                print(f"model saved to {model_path}")
            if self.args.eval_episodes > 0:
                log_evaluation(evaluate(self.agent, self.args, self.device, self.args.eval_episodes), self.writer)
        finally:
            self.close()


if __name__ == "__main__":
    main()
