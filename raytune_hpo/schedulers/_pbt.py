"""Population-based training through Ray Tune's schedulers: PBT (Jaderberg et al., 2017:
trials in the bottom quantile copy the weights of a trial in the top one and perturb its
hyperparameters) and PB2 (Parker-Holder, Nguyen & Roberts, NeurIPS 2020: a GP bandit chooses
the new values). The budget is ``training_iteration`` (an epoch of the built-in CNN).

What differs from using Ray's classes directly:

- the mutations come from the sweep's own space: its bounds, log scale, quantization and
  categories (Ray perturbs a value by x0.8 / x1.2 with no bounds; ``Keep`` puts the value back
  inside the parameter: clipped, rounded to its integer or q, below an open high);
- Ray's PBT draws from Python's global ``random`` (and PB2 from numpy's): each call runs on the
  scheduler's own state, seeded from the sweep, swapped in and out, so a seed fixes the
  perturbations and the caller's global RNGs are left alone;
- every exploit is also written to ``pbt_schedule.jsonl`` in the sweep directory with trial
  ids (Ray's ``pbt_global.txt`` names trials by their tags), which ``results`` and the
  report read;
- a trial that reaches its first perturbation without a checkpoint (a user trainable that
  never checkpoints: PBT cannot copy it) is named once in a one-line warning instead of Ray's
  silent skip.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import uuid
from typing import Any

import numpy as np
from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.schedulers.pb2 import PB2

from raytune_hpo import ray_compat
from raytune_hpo.errors import UserError
from raytune_hpo.names import BUDGET_ATTR, PBT_SCHEDULE
from raytune_hpo.sweep.space import CategoricalParam, FloatParam, SearchSpace


class Keep:
    """``custom_explore_fn``: each mutated value put back inside its parameter."""

    def __init__(self, space: SearchSpace, paths: list[tuple[str, ...]]) -> None:
        self.params = {path: space.params[path] for path in paths}

    def __call__(self, config: dict) -> dict:
        for path, p in self.params.items():
            node = config
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = inside(p, node[path[-1]])
        return config


def inside(p: Any, value: Any) -> Any:
    """The value of ``p`` nearest ``value``."""
    if isinstance(p, CategoricalParam):
        return value if p.problem(value) is None else p.choices[0]
    x = min(max(float(value), p.low), p.high)
    return p.nearest(x) if isinstance(p, FloatParam) else p.nearest(round(x))


def mutations(space: SearchSpace, paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """Ray's ``hyperparam_mutations`` (nested like the config): a Tune domain per range, the
    choices of a categorical."""
    out: dict[str, Any] = {}
    for path in paths:
        p = space.params[path]
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = list(p.choices) if isinstance(p, CategoricalParam) else p.to_tune()
    return out


def bounds(space: SearchSpace, paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """PB2's ``hyperparam_bounds``: [low, high] of each (int or float) range."""
    out: dict[str, Any] = {}
    for path in paths:
        p = space.params[path]
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = [p.low, p.high]
    return out


def _at(config: dict, path: tuple[str, ...]) -> Any:
    node: Any = config
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


class _Population(ray_compat.ExploitHook):
    """What our PBT and PB2 add to Ray's (see the module docstring)."""

    def __init__(self, *, space: SearchSpace, paths, seed: int | None, **kw) -> None:
        self._py_state = random.Random(seed).getstate()
        self._np_state = np.random.RandomState(seed).get_state()
        self._warned_no_checkpoint = False
        self._mutated_paths = list(paths)
        super().__init__(custom_explore_fn=Keep(space, paths), **self._search(space, paths), **kw)

    def _search(self, space: SearchSpace, paths) -> dict[str, Any]:
        """The keyword Ray's class takes the mutated parameters under."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _own_rngs(self):
        py, npy = random.getstate(), np.random.get_state()
        random.setstate(self._py_state)
        np.random.set_state(self._np_state)
        try:
            yield
        finally:
            self._py_state, self._np_state = random.getstate(), np.random.get_state()
            random.setstate(py)
            np.random.set_state(npy)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._check_checkpoint(trial, result)
        with self._own_rngs():
            return super().on_trial_result(tune_controller, trial, result)

    def _check_checkpoint(self, trial, result: dict) -> None:
        interval = ray_compat.perturbation_interval(self)
        if self._warned_no_checkpoint or result.get(BUDGET_ATTR, 0) < interval:
            return
        if trial.checkpoint is None:
            self._warned_no_checkpoint = True
            print(
                f"raytune-hpo: warning: scheduler {self.name}: trial {trial.trial_id} reached "
                f"its first perturbation ({BUDGET_ATTR} {result.get(BUDGET_ATTR)}) without a "
                "checkpoint, so PBT cannot copy it and its exploits are skipped; report one with "
                "raytune_hpo.report(..., state=...) or ray.tune.report(..., checkpoint=...)",
                file=sys.stderr,
                flush=True,
            )

    def on_exploit(self, trial_state, new_state, trial, trial_to_clone, new_config):
        # The states' results are the ones this exploit acts on: the trial's own (Ray updates
        # trial.last_result only after the scheduler) and the donor's checkpointed one.
        entry = {
            "trial_id": trial.trial_id,
            BUDGET_ATTR: (trial_state.last_result or trial.last_result).get(BUDGET_ATTR, 0),
            "copied": trial_to_clone.trial_id,
            "copied_at": (new_state.last_result or trial_to_clone.last_result).get(BUDGET_ATTR, 0),
            "config": {".".join(path): _at(new_config, path) for path in self._mutated_paths},
        }
        _append(trial, (json.dumps(entry, default=str) + "\n").encode())


def _append(trial, line: bytes) -> None:
    """Add a line to the schedule in the experiment directory on its storage (local or a
    bucket), not in the driver's staging copy: a resumed sweep's driver starts a new staging
    directory, whose copy would replace the stored one when Ray syncs (seen: 3 exploits, then
    1). The file is rewritten whole (a temporary file moved over it; an object store's PUT),
    so a kill leaves the schedule before or after the exploit, never a line cut short."""
    fs, exp = trial.storage.storage_filesystem, trial.storage.experiment_fs_path
    path = f"{exp}/{PBT_SCHEDULE}"
    try:
        with fs.open_input_stream(path) as f:
            old = f.read()
    except (OSError, FileNotFoundError):
        old = b""
    if old and not old.endswith(b"\n"):  # one cut short by an older writer: not a row
        old = old[: old.rfind(b"\n") + 1]
    if fs.type_name in ("s3", "gcs"):
        with fs.open_output_stream(path) as f:
            f.write(old + line)
        return
    part = f"{exp}/.{PBT_SCHEDULE}.{uuid.uuid4().hex[:8]}.part"  # as raytune_hpo.storage names
    with fs.open_output_stream(part) as f:
        f.write(old + line)
    fs.move(part, path)


class PBT(_Population, PopulationBasedTraining):
    """Ray's ``PopulationBasedTraining`` over the sweep's space, seeded (module docstring)."""

    name = "pbt"

    def _search(self, space: SearchSpace, paths) -> dict[str, Any]:
        return {"hyperparam_mutations": mutations(space, paths)}


class BanditPBT(_Population, PB2):
    """Ray's ``PB2`` over the sweep's ranges, seeded (module docstring)."""

    name = "pb2"

    def _search(self, space: SearchSpace, paths) -> dict[str, Any]:
        return {"hyperparam_bounds": bounds(space, paths)}


def mutated_paths(
    kind: str, space: SearchSpace, mutable: tuple[str, ...] | None, mutate: list | None
) -> list[tuple[str, ...]]:
    """The space parameters PBT may change: ``mutate`` (names of the space), by default every
    one the trainable can take mid-run (``mutable``; None: it does not say, so all)."""
    by_name = dict(zip(space.names, space.params, strict=True))
    takes = [n for n in by_name if mutable is None or n.split(".")[0] in mutable]
    if mutate is None:
        names = takes
    else:
        if not isinstance(mutate, list) or not all(isinstance(n, str) for n in mutate):
            raise UserError("a list of the space's parameter names", field="mutate")
        names = mutate
    for n in names:
        if n not in by_name:
            raise UserError(
                f"{n!r} is not a parameter of the space; allowed: {', '.join(by_name) or 'none'}",
                field="mutate",
            )
        if n not in takes:
            raise UserError(
                f"{n!r} cannot change while a trial runs (it shapes the model, its data or its "
                f"budget); allowed: {', '.join(takes) or 'none'}",
                field="mutate",
            )
        if kind == "pb2" and isinstance(space.params[by_name[n]], CategoricalParam):
            raise UserError(
                f"{n!r} is categorical; pb2 mutates int and float ranges only (pbt takes all)",
                field="mutate",
            )
    if not names:
        raise UserError(
            f"scheduler {kind} finds no parameter of the space it may change mid-run; "
            f"allowed: {', '.join(takes) or 'none (search lr, momentum, weight_decay, ...)'}",
            field="mutate",
        )
    return [by_name[n] for n in names]


def _at_least(name: str, value: Any, low: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise UserError(f"must be a number >= {low}, got {value!r}", field=name)


def population(
    kind: str,
    *,
    metric,
    mode,
    space: SearchSpace | None,
    mutable,
    seed,
    perturbation_interval,
    quantile_fraction,
    resample_probability,
    burn_in_period,
    mutate,
):
    """A PBT (``kind`` "pbt") or PB2 scheduler for the sweep's space, options checked."""
    _at_least("perturbation_interval", perturbation_interval, 1)
    _at_least("burn_in_period", burn_in_period, 0)
    if isinstance(quantile_fraction, bool) or not 0 < quantile_fraction <= 0.5:
        raise UserError(
            f"must lie in (0, 0.5], got {quantile_fraction!r}", field="quantile_fraction"
        )
    if isinstance(resample_probability, bool) or not 0 <= resample_probability <= 1:
        raise UserError(
            f"must lie in [0, 1], got {resample_probability!r}", field="resample_probability"
        )
    if space is None or not space.params:
        raise UserError(f"scheduler {kind} needs parameters in the space to mutate", field="space")
    paths = mutated_paths(kind, space, mutable, mutate)
    common = {
        "time_attr": BUDGET_ATTR,
        "metric": metric,
        "mode": mode,
        "perturbation_interval": perturbation_interval,
        "quantile_fraction": quantile_fraction,
    }
    if kind == "pb2":
        return BanditPBT(space=space, paths=paths, seed=seed, **common)
    return PBT(
        space=space,
        paths=paths,
        seed=seed,
        burn_in_period=burn_in_period,
        resample_probability=resample_probability,
        **common,
    )


__all__ = [
    "PBT",
    "BanditPBT",
    "Keep",
    "bounds",
    "inside",
    "mutated_paths",
    "mutations",
    "population",
]
