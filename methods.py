"""The methods, presets and game sets of the benchmark: the one place each is defined, imported by every tool.

benchmark.py runs a method's script with its flags; plot_results.py names and colours its curves (found by its runs'
exp_name) with its label and colour; feature_scale.py builds its network. Adding a method is one row of METHODS.
Standard library only, as benchmark.py is.
"""

from __future__ import annotations  # annotations as text: `tuple[str, ...]` on Python 3.8, as benchmark.py

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str  # what --methods calls it; its runs' directories are OUT/PRESET/ENV/NAME/seedSEED
    script: str  # its training script, beside this file
    flags: tuple[str, ...]  # the flags that make it, besides the script's defaults
    label: str  # its name in plot_results.py's figures and tables, and in --sps's speed table
    colour: str  # its colour in every figure
    what: str  # what it is, for --help

    @property
    def exp_name(self) -> str:
        """Its runs' exp_name: its name where it has flags of its own (given as --exp-name), else its script's stem."""
        return self.name if self.flags else os.path.splitext(self.script)[0]

    @property
    def run_flags(self) -> tuple[str, ...]:
        return (*self.flags, "--exp-name", self.name) if self.flags else ()


SPRIG = "sprig_ppo_atari.py"
# fmt: off
METHODS = (
    Method("ppo", "ppo_atari.py", (), "PPO", "tab:blue", "CleanRL's PPO with the Nature CNN"),
    Method("sprig", SPRIG, (), "SPRIG", "tab:orange", "SPRIG, its default leader utility"),
    Method("sprig-pg", SPRIG, ("--leader-utility", "pg"), "SPRIG-pg", "tab:red", "Algorithm 1's printed leader utility"),
    Method("sprig-implicit", SPRIG, ("--leader-gradient", "implicit"), "SPRIG-implicit", "tab:purple",
           "the leader follows its total derivative through the follower"),
    Method("sprig-joint", SPRIG, ("--update", "joint"), "PPO on SPRIG's network", "tab:green",
           "SPRIG's network under PPO's update: the control that tells the network's effect from the game's"),
    Method("sprig-cnn", SPRIG, ("--perception", "nature"), "SPRIG's game on PPO's CNN", "tab:brown",
           "SPRIG's two-stage game on the Nature CNN: the game without SPRIG's network"),
    Method("sprig-scaled", SPRIG, ("--perception", "attention-scaled"), "SPRIG, scaled features", "tab:pink",
           "SPRIG, its network's features starting at the Nature CNN's scale"),
    Method("sprig-scaled-joint", SPRIG, ("--perception", "attention-scaled", "--update", "joint"),
           "PPO on SPRIG's network, scaled features", "tab:olive", "that network under PPO's update: its control"),
)
# fmt: on


def methods_table_mistake() -> str | None:
    """The first key of METHODS that two rows share (a name, exp_name or label: their runs or curves would mix), in
    one line; None if there is none. benchmark.sh and plot_results.py both refuse to start with one."""
    for key in ("name", "exp_name", "label"):
        values = [getattr(method, key) for method in METHODS]
        if twice := [value for value in values if values.count(value) > 1]:
            return f"methods.py's METHODS: two methods with the {key} {twice[0]} (give each its own)"
    return None


def method_named(name: str) -> Method | None:
    return next((method for method in METHODS if method.name == name), None)


# Presets: flags added to every run. `paper` maps the paper's Table 1 (Martinez-Lopez, Chen & Lu, arXiv 2502.14264;
# docs/design.md, "The paper's setup (Table 1, Figure 2)") to every method: 8 envs x 256 steps = rollouts of 2048,
# 32 minibatches of 64, lr 1e-4, clip 0.2, episodes cut at 10000 steps; the rest of Table 1 is the scripts' defaults.
PRESETS = {
    "cleanrl": (),
    "paper": ("--num-envs", "8", "--num-steps", "256", "--num-minibatches", "32", "--learning-rate", "1e-4")
    + ("--clip-coef", "0.2", "--max-episode-steps", "10000"),
}
# Game sets of --games. atari5: the five games whose scores best predict the median human-normalised score over all
# 57 (Aitchison, Sweetser & Hutter, "Atari-5", 2022); atari3: the validation set that paper sets aside, for tuning.
GAME_SETS = {
    "atari5": tuple(f"{game}NoFrameskip-v4" for game in ("BattleZone", "DoubleDunk", "NameThisGame", "Phoenix", "Qbert")),
    "atari3": tuple(f"{game}NoFrameskip-v4" for game in ("BattleZone", "NameThisGame", "Phoenix")),
}
