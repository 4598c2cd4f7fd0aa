"""--cudagraphs: the rollout's inference and each minibatch update captured once in CUDA graphs, then replayed.

This machine has no GPU, so the graphed code path runs here with an eager stand-in for the capture (replay = call
again): everything but the CUDA calls themselves, the static buffers, the warm-up and what it puts back, the rates
copied into the optimisers, the cloned outputs, runs and is held to the plain path bit for bit. The sampler the graph
holds is checked against Categorical.sample and against the policy's probabilities.
"""

import copy
import dataclasses
import glob
import importlib
import os
import sys

import numpy as np
import pytest
import torch
from helpers import TINY_RUN, parse_args_stops_with, read_scalars
from torch.distributions.categorical import Categorical

FLAGS = [*TINY_RUN, "--total-timesteps", 512, "--max-episode-steps", 40, "--checkpoint-every", 1]


def eager_stand_in(function, warm_up):
    """capture_cuda_graph where there is no GPU: warm up as it does, then 'replay' by calling function again."""
    warm_up()
    return function


def test_sample_draws_what_categorical_sample_draws_from_the_same_rng_state(twin):
    probs = Categorical(logits=3 * torch.randn(1000, 9, generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(1)
    expected = probs.sample()
    torch.manual_seed(1)
    assert torch.equal(twin.sample(probs), expected)  # so the plain path's rollouts are what they were


def test_sample_is_a_true_sample_of_the_policy(twin):
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05, 0.0])
    torch.manual_seed(0)
    draws = 200_000
    assert_drawn_with_probabilities(twin.sample(Categorical(probs=p.expand(draws, 6))), p)


def assert_drawn_with_probabilities(draws, p):
    """A chi-square test of the draws' counts against p, whose last action has probability 0 (never drawn)."""
    counts = torch.bincount(draws.cpu(), minlength=len(p)).double()
    assert counts[-1] == 0
    expected = len(draws) * p[:-1].double()
    chi_square = ((counts[:-1] - expected) ** 2 / expected).sum().item()
    assert chi_square < 18.47  # the 99.9% quantile of chi-square with 4 degrees of freedom


PARSE_ARGS = {}


def train(module, tmp_path, monkeypatch, *flags, graphed, capture=eager_stand_in):
    """Run the script's main() in this process from tmp_path, graphed (by capture: the stand-in, or on a GPU the CUDA
    capture) or plain. Returns (its exit status, its run directory)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *map(str, flags)])
    args, checkpoint = PARSE_ARGS.setdefault(module, module.parse_args)()  # the script's own, not a replacement below
    monkeypatch.setattr(module, "parse_args", lambda: (dataclasses.replace(args, cudagraphs=graphed), checkpoint))
    monkeypatch.setattr(torch.distributions.Distribution, "_validate_args", torch.distributions.Distribution._validate_args)
    captures = []
    monkeypatch.setattr(module, "capture_cuda_graph", lambda *functions: captures.append(functions) or capture(*functions))
    try:
        module.main()
        status = 0
    except SystemExit as stop:
        status = stop.code
    eager_update = "implicit" in flags  # its conjugate gradient stops on values the host reads: only the policy is graphed
    assert len(captures) == (0 if not graphed else 1 if eager_update else 2)  # the policy and the update, each once
    (run_dir,) = glob.glob(os.path.join(tmp_path, "runs", "*")) if args.resume is None else [os.path.dirname(args.resume)]
    return status, run_dir


def learned(run_dir):
    """Every scalar the run logged but its speed, and its last checkpoint's agent and optimisers."""
    scalars = {tag: values for tag, values in read_scalars(run_dir).items() if tag != "charts/SPS" and "perf/" not in tag}
    checkpoint = torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True)
    optimizers = {name: value for name, value in checkpoint.items() if name.endswith("optimizer")}  # state, param_groups
    return scalars, checkpoint["agent"], optimizers


def assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert type(a) is type(b) and a == b  # a rate left as a tensor, or Adam left capturable, would differ here


VARIANTS = {
    "ppo": ("ppo_atari", []),
    "sprig": ("sprig_ppo_atari", []),
    "joint": ("sprig_ppo_atari", ["--update", "joint"]),
    "nature": ("sprig_ppo_atari", ["--perception", "nature"]),
    "target-kl": ("sprig_ppo_atari", ["--target-kl", "0.0001"]),  # epochs cut short by a statistic of the graph's
    "implicit": ("sprig_ppo_atari", ["--leader-gradient", "implicit"]),  # the policy graphed, the update eager
}


@pytest.mark.parametrize("script, flags", VARIANTS.values(), ids=VARIANTS.keys())
def test_the_graphed_bookkeeping_with_an_eager_capture_trains_bit_for_bit_as_the_plain_path(
    script, flags, tmp_path, monkeypatch
):
    # What this cannot see, a GPU must: the capture itself, a rate frozen into the graph, outputs a replay overwrites
    # (the stand-in returns new ones); the tests at the end of this file, on a machine with CUDA.
    module = pytest.importorskip(script)
    (tmp_path / "plain").mkdir(), (tmp_path / "graphed").mkdir()
    _, plain = train(module, tmp_path / "plain", monkeypatch, *FLAGS, *flags, graphed=False)
    _, graphed = train(module, tmp_path / "graphed", monkeypatch, *FLAGS, *flags, graphed=True)
    plain_scalars, plain_agent, plain_optimizers = learned(plain)
    graphed_scalars, graphed_agent, graphed_optimizers = learned(graphed)
    assert len(plain_scalars["losses/entropy"]) == 4 and plain_scalars["charts/episodic_return"]  # 4 iterations, episodes
    assert np.diff([value for _, value in plain_scalars["charts/learning_rate"]]).min() < 0  # the rate anneals
    assert graphed_scalars == plain_scalars
    assert_same(graphed_agent, plain_agent)
    assert_same(graphed_optimizers, plain_optimizers)


@pytest.mark.parametrize("first, then", [(True, False), (False, True)], ids=["graphed-then-eager", "eager-then-graphed"])
def test_a_paused_run_resumes_under_the_other_path_as_if_uninterrupted(first, then, tmp_path, monkeypatch):
    module = pytest.importorskip("sprig_ppo_atari")
    (tmp_path / "whole").mkdir(), (tmp_path / "paused").mkdir()
    _, whole = train(module, tmp_path / "whole", monkeypatch, *FLAGS, graphed=False)
    status, paused = train(module, tmp_path / "paused", monkeypatch, *FLAGS, "--stop-at-step", 256, graphed=first)
    assert status == module.EXIT_PAUSED
    status, resumed = train(
        module, tmp_path / "paused", monkeypatch, "--resume", os.path.join(paused, "checkpoint.pt"), graphed=then
    )
    assert status == 0 and resumed == paused
    whole_scalars, whole_agent, whole_optimizers = learned(whole)
    resumed_scalars, resumed_agent, resumed_optimizers = learned(resumed)
    assert resumed_scalars == whole_scalars
    assert_same(resumed_agent, whole_agent)
    assert_same(resumed_optimizers, whole_optimizers)


@pytest.mark.parametrize("script", ["ppo_atari.py", "sprig_ppo_atari.py"])
def test_cudagraphs_without_cuda_is_one_line(script, tmp_path, monkeypatch):
    said = parse_args_stops_with(script, "--cudagraphs", "--no-cuda", cwd=tmp_path, monkeypatch=monkeypatch)
    assert said == "error: --cudagraphs captures CUDA graphs: it needs --cuda, not --no-cuda"
    if not torch.cuda.is_available():
        said = parse_args_stops_with(script, "--cudagraphs", cwd=tmp_path, monkeypatch=monkeypatch)
        assert said == "error: --cudagraphs captures CUDA graphs: it needs a CUDA device, and torch finds none here"
    assert os.listdir(tmp_path) == []


# On a machine with CUDA (skipped here): the capture itself, against the eager path.
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def update_function(module, agent, args):
    """The script's optimisers, and its main()'s update(mb) over them, as main() builds both."""
    adam = lambda parameters: torch.optim.Adam(parameters, lr=args.learning_rate, eps=1e-5)  # noqa: E731
    if module.__name__ == "ppo_atari":
        optimizers = {"optimizer": adam(agent.parameters())}
        return optimizers, lambda mb: module.ppo_step(agent, optimizers["optimizer"], mb, args)
    if args.update == "joint":
        optimizers = {"joint_optimizer": adam(agent.parameters())}
        return optimizers, lambda mb: module.joint_step(agent, optimizers["joint_optimizer"], mb, args)
    optimizers = {"leader_optimizer": adam(agent.leader_parameters()), "follower_optimizer": adam(agent.follower_parameters())}

    def update(mb):
        stats = module.leader_step(agent, optimizers["leader_optimizer"], mb, args)
        return stats | module.follower_step(agent, optimizers["follower_optimizer"], mb, args)

    return optimizers, update


def cuda_minibatches(agent, count, size=64):
    """count minibatches of random frames on the GPU, with the agent's own actions, log-probabilities and values."""
    generator = torch.Generator(device="cuda").manual_seed(0)
    minibatches = []
    for _ in range(count):
        obs = torch.randint(0, 256, (size, 4, 84, 84), generator=generator, device="cuda", dtype=torch.uint8)
        with torch.no_grad():
            actions, logprobs, _, values = agent.get_action_and_value(obs)
        advantages = torch.randn(size, generator=generator, device="cuda")
        returns = values.flatten() + torch.randn(size, generator=generator, device="cuda")
        mb = {"obs": obs, "actions": actions, "logprobs": logprobs, "advantages": advantages, "returns": returns}
        minibatches.append(mb | {"values": values.flatten()})
    return minibatches


CUDA_VARIANTS = {
    "ppo": ("ppo_atari", {}),
    "sprig": ("sprig_ppo_atari", {}),
    "joint": ("sprig_ppo_atari", {"update": "joint"}),
    "nature": ("sprig_ppo_atari", {"perception": "nature"}),  # channels-last weights in the capturable Adam
}


@needs_cuda
@pytest.mark.parametrize("script, fields", CUDA_VARIANTS.values(), ids=CUDA_VARIANTS.keys())
def test_on_cuda_graphed_updates_equal_eager_ones_within_float32_round_off(script, fields, tmp_path):
    module = importlib.import_module(script)
    args = module.Args(learning_rate=2.5e-4, **fields)
    torch.manual_seed(0)
    agent = module.Agent(9, **({"perception": args.perception} if "perception" in fields else {})).cuda()
    first, *minibatches = cuda_minibatches(agent, 6)
    # A resumed run's optimisers: one eager step, then their state through a checkpoint file (its step on the CPU)
    optimizers, update = update_function(module, agent, args)
    update(first)
    torch.save({name: optimizer.state_dict() for name, optimizer in optimizers.items()}, tmp_path / "optimizers.pt")
    eager_agent = copy.deepcopy(agent)
    (eager_optimizers, eager_update), (optimizers, update) = [update_function(module, a, args) for a in (eager_agent, agent)]
    for each in (eager_optimizers, optimizers):
        saved = torch.load(tmp_path / "optimizers.pt", map_location="cpu", weights_only=True)  # a copy each, as a resume
        for name, optimizer in each.items():
            optimizer.load_state_dict(saved[name])
    graphed = module.CudaGraphed(update, agent, optimizers, module.capture_cuda_graph)
    eager_stats, graphed_stats = [], []
    for k, mb in enumerate(minibatches):
        for optimizer in [*eager_optimizers.values(), *optimizers.values()]:  # annealed between calls, as main() does
            optimizer.param_groups[0]["lr"] = args.learning_rate * (1 - k / len(minibatches))
        eager_stats.append(eager_update(mb))
        graphed_stats.append(graphed(mb))  # kept, then compared: each must outlive the replays after it
    for eager, graphed_one in zip(eager_stats, graphed_stats):
        for name in eager:
            torch.testing.assert_close(graphed_one[name], eager[name], rtol=1e-4, atol=1e-6, msg=name)
    for (name, p), q in zip(agent.named_parameters(), eager_agent.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=name)
    for optimizer in optimizers.values():  # as main() made them, outside the graph's calls
        assert isinstance(optimizer.param_groups[0]["lr"], float) and not optimizer.param_groups[0]["capturable"]


@needs_cuda
@pytest.mark.parametrize("script, flags", list(VARIANTS.values())[:4], ids=list(VARIANTS)[:4])
def test_on_cuda_a_graphed_run_trains_as_an_eager_one_and_pauses_and_resumes_under_either(
    script, flags, tmp_path, monkeypatch
):
    module = importlib.import_module(script)
    cuda_flags = [flag for flag in FLAGS if flag != "--no-cuda"] + ["--cuda", *flags]
    capture = module.capture_cuda_graph
    runs = {}
    for name, graphed in (("eager", False), ("graphed", True)):
        (tmp_path / name).mkdir()
        status, run_dir = train(module, tmp_path / name, monkeypatch, *cuda_flags, graphed=graphed, capture=capture)
        assert status == 0
        runs[name] = learned(run_dir)[0]
    for tag in ("losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl"):
        (_, eager), (_, graphed) = runs["eager"][tag][0], runs["graphed"][tag][0]  # the first iteration: the same rollout
        assert graphed == pytest.approx(eager, rel=1e-3, abs=1e-6), tag
        assert all(np.isfinite(value) for _, value in runs["graphed"][tag])
    for first, then in ((True, False), (False, True)):
        directory = tmp_path / f"paused-{first}"
        directory.mkdir()
        status, paused = train(
            module, directory, monkeypatch, *cuda_flags, "--stop-at-step", 256, graphed=first, capture=capture
        )
        assert status == module.EXIT_PAUSED
        resume = ["--resume", os.path.join(paused, "checkpoint.pt")]
        assert train(module, directory, monkeypatch, *resume, graphed=then, capture=capture) == (0, paused)


@needs_cuda
@pytest.mark.parametrize("script", ["ppo_atari", "sprig_ppo_atari"])
def test_on_cuda_the_graphed_policy_samples_the_policy(script):
    module = importlib.import_module(script)
    torch.manual_seed(0)
    agent = module.Agent(6).cuda()
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05, 0.0])
    with torch.no_grad():  # logits log p whatever the features: a policy of known probabilities
        agent.actor.weight.zero_()
        agent.actor.bias.copy_(p.log().clamp_min(-1e4))
    policy = module.CudaGraphed(agent.get_action_and_value, agent, {}, module.capture_cuda_graph)
    obs = torch.zeros((8, 4, 84, 84), dtype=torch.uint8, device="cuda")
    with torch.inference_mode():
        draws = torch.cat([policy(obs)[0] for _ in range(5000)])  # 40,000 draws, replay after replay
    assert_drawn_with_probabilities(draws, p)
