"""The trainables of Ray Tune's documented examples, as a Ray user would carry them over, for
the ``ray-*.yaml`` sweeps beside this file: ``easy_objective`` (Ray's ASHA and Optuna examples,
one objective or two), ``MyTrainableClass`` (Ray's BOHB example, a class Trainable) and
``pbt_function`` (Ray's PBT toy problem). Only Ray's own API is used: the sweep files say the
rest (space, searcher, scheduler, stop, fail_fast, checkpoints)."""

from __future__ import annotations

import json
import os
import random
import tempfile
import time

import numpy as np
from ray import tune


def evaluation_fn(step: int, width: float, height: float, mult: float = 1.0) -> float:
    return (0.1 + width * step / 100) ** (-1) + height * 0.1 * mult


def easy_objective(config: dict) -> None:
    """Ray's ``easy_objective``: ``mean_loss`` falls with the steps, faster for a wide
    ``width``; ``gain`` is the multi-objective example's second objective."""
    width, height, mult = config["width"], config["height"], config.get("mult", 1.0)
    for step in range(config["steps"]):
        score = evaluation_fn(step, width, height, mult)
        tune.report({"iterations": step, "mean_loss": score, "loss": score, "gain": score * width})
        time.sleep(config.get("pause", 0.1))


class MyTrainableClass(tune.Trainable):
    """Ray's BOHB example: a learning curve that is a sigmoid whose slope and height the
    ``width`` and ``height`` set."""

    def setup(self, config: dict) -> None:
        self.timestep = 0

    def step(self) -> dict:
        self.timestep += 1
        v = np.tanh(float(self.timestep) / self.config.get("width", 1))
        v *= self.config.get("height", 1)
        return {"episode_reward_mean": v}

    def save_checkpoint(self, checkpoint_dir: str) -> dict:
        with open(os.path.join(checkpoint_dir, "checkpoint"), "w") as f:
            json.dump({"timestep": self.timestep}, f)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, "checkpoint")) as f:
            self.timestep = json.load(f)["timestep"]

    def reset_config(self, new_config: dict) -> bool:
        self.config = new_config
        return True


def pbt_function(config: dict) -> None:
    """Ray's PBT toy problem: ``mean_accuracy`` grows fastest when ``lr`` is near a best value
    that rises, then falls, with the accuracy reached; a checkpoint every
    ``checkpoint_interval`` steps (the perturbation interval in Ray's example)."""
    step, accuracy = 1, 0.0
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as d, open(os.path.join(d, "checkpoint.json")) as f:
            state = json.load(f)
        step, accuracy = state["step"] + 1, state["acc"]
    midpoint, q_tolerance, noise_level = 100, 3, 2
    lr = config["lr"]
    while True:
        if accuracy < midpoint:
            optimal_lr = 0.01 * accuracy / midpoint
        else:
            optimal_lr = 0.01 - 0.01 * (accuracy - midpoint) / midpoint
        optimal_lr = min(0.01, max(0.001, optimal_lr))
        q_err = max(lr, optimal_lr) / min(lr, optimal_lr)
        if q_err < q_tolerance:
            accuracy += (1.0 / q_err) * random.random()
        elif lr > optimal_lr:
            accuracy -= (q_err - q_tolerance) * random.random()
        accuracy = max(0.0, accuracy + noise_level * np.random.normal())
        metrics = {"mean_accuracy": accuracy, "cur_lr": lr, "optimal_lr": optimal_lr}
        if step % config["checkpoint_interval"] == 0:
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "checkpoint.json"), "w") as f:
                    json.dump({"acc": accuracy, "step": step}, f)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(metrics)
        step += 1
