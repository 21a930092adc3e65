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
  silent skip; a checkpoint that comes with that very result counts (Ray registers it only
  after the scheduler has seen the result);
- a space with conditions (``when:``): a trial's config keeps only the parameters that apply
  to it (Ray fills every mutated key into every trial), an exploit perturbs only the donor's
  active parameters, and one that changes a parent (``optimizer``) takes the active set of
  the new value (a parameter that now applies is drawn from the space); the schedule records
  only those;
- one exploit per trial per perturbation interval (also across a resume: the schedule on
  storage is read back);
- with ``kept`` (``checkpoints.keep``), Ray deletes a trial's older checkpoints while another
  trial may still copy one: an exploit copies the donor's checkpoint into the exploiting
  trial's own directory (the donor's newest when the one PBT chose is gone), removed once that
  trial has a checkpoint of its own.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import warnings
from typing import Any, ClassVar

import numpy as np
from ray.tune.result import SHOULD_CHECKPOINT
from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.schedulers.pb2 import PB2

import raytune_hpo.ray_compat as compat
import raytune_hpo.schedulers._pbt_files as files
from raytune_hpo.errors import UserError, did_you_mean
from raytune_hpo.names import BUDGET_ATTR
from raytune_hpo.schedulers._pbt_space import Keep, at, bounds, conditioned, inside, mutations, only
from raytune_hpo.sweep.space import CategoricalParam, SearchSpace


class _Population(compat.ExploitHook):
    """What our PBT and PB2 add to Ray's (see the module docstring)."""

    name: ClassVar[str]  # the scheduler's name in sweep files (each subclass's)

    def __init__(
        self, *, space: SearchSpace, paths, seed: int | None, kept: int | None = None, **kw
    ) -> None:
        self._py_state = random.Random(seed).getstate()
        self._np_state = np.random.RandomState(seed).get_state()
        self._warned_no_checkpoint = False
        self._function_trainable: bool | None = None
        self._space = space
        self._mutated_paths = list(paths)
        self._now: dict[str, int] = {}  # trial id -> the budget of the result being decided
        self._exploited: set[tuple[str, int]] | None = None  # (trial id, interval), read lazily
        self._copies = files.Copies() if kept is not None else None
        self._narrowed: dict[str, Any] = {}  # the mutations of the exploit under way
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

    def on_trial_add(self, tune_controller, trial) -> None:
        """Ray fills in every mutated parameter a trial's config lacks: under ``when:`` those
        are the ones that do not apply to it, and they stay out."""
        lacking = {p[0] for p in self._mutated_paths} - set(trial.config)
        with self._own_rngs(), warnings.catch_warnings():
            if self._copies is not None:  # exploits copy what they need (module docstring)
                warnings.filterwarnings("ignore", message=".*num_to_keep.* with PBT")
            super().on_trial_add(tune_controller, trial)
        for key in lacking:
            trial.config.pop(key, None)
            trial.evaluated_params.pop(key, None)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._check_checkpoint(trial, result)
        self._now[trial.trial_id] = result.get(BUDGET_ATTR, 0)
        if self._copies is not None:
            self._copies.drop_replaced(trial)
            self._copies.reported(trial, result)
        with self._own_rngs():
            return super().on_trial_result(tune_controller, trial, result)

    def _check_checkpoint(self, trial, result: dict) -> None:
        interval = compat.pbt_interval(self)
        if self._warned_no_checkpoint or result.get(BUDGET_ATTR, 0) < interval:
            return
        if not self._saves_only_when_it_reports(trial):
            return  # a class Trainable: PBT asks it to save (save_checkpoint)
        # A checkpoint reported with this very result is registered after the scheduler.
        if trial.checkpoint is None and not result.get(SHOULD_CHECKPOINT):
            self._warned_no_checkpoint = True
            print(
                f"raytune-hpo: warning: scheduler {self.name}: trial {trial.trial_id} reached "
                f"its first perturbation ({BUDGET_ATTR} {result.get(BUDGET_ATTR)}) without a "
                "checkpoint, so PBT cannot copy it and its exploits are skipped; report one with "
                "raytune_hpo.report(..., state=...) or ray.tune.report(..., checkpoint=...)",
                file=sys.stderr,
                flush=True,
            )

    def _saves_only_when_it_reports(self, trial) -> bool:
        """A function trainable: what PBT copies is the last checkpoint it reported (a class
        Trainable is asked to save). Looked up once."""
        if self._function_trainable is None:
            from ray.tune.trainable import FunctionTrainable

            cls = trial.get_trainable_cls()
            self._function_trainable = cls is None or issubclass(cls, FunctionTrainable)
        return self._function_trainable

    # ------------------------------------------------------------------ exploits
    def exploit(self, trial, trial_to_clone, proceed) -> None:
        """Ray's exploit (``proceed()``), at most once per trial and interval, perturbing the
        donor's active parameters only (with ``kept``: from a copy of the donor's checkpoint)."""
        step = (trial.trial_id, self._now.get(trial.trial_id, 0) // compat.pbt_interval(self))
        done = self._exploits_done(trial)
        if step in done:
            return  # the trial goes on as it is
        state = compat.pbt_state(self, trial_to_clone)
        pinned = (state.last_checkpoint, state.last_result)
        if self._copies is not None:
            copied = self._copies.take(trial, trial_to_clone, *pinned)
            if copied is None:
                return  # nothing of the donor's left to copy
            state.last_checkpoint, state.last_result = copied
        done.add(step)
        active = set(self._space.active(trial_to_clone.config))
        try:
            with compat.pbt_mutations(self, lambda m: only(m, active)) as self._narrowed:
                proceed()
        finally:
            state.last_checkpoint, state.last_result = pinned
        if self._copies is not None:
            self._copies.drop_unregistered(trial)

    def new_config(self, config: dict, operations: dict) -> tuple[dict, dict]:
        """Ray's new config, then the parameters that apply to it: one that a changed parent
        turned off leaves, one it turned on is drawn from the space."""
        if self._space.conditional:
            config = conditioned(self._space, config)
            # Ray then names and logs the mutated keys: those both configs hold.
            narrowed = only(self._narrowed, set(self._space.active(config)))
            self._narrowed.clear()
            self._narrowed.update(narrowed)
        return config, operations

    def _exploits_done(self, trial) -> set[tuple[str, int]]:
        """The exploits made so far, (trial id, interval), with those the schedule on storage
        holds (a resumed sweep's scheduler starts afresh)."""
        if self._exploited is None:
            interval = compat.pbt_interval(self)
            self._exploited = {
                (e["trial_id"], int(e.get(BUDGET_ATTR, 0)) // interval)
                for e in files.read_schedule(trial)
            }
        return self._exploited

    def on_exploit(self, trial_state, new_state, trial, trial_to_clone, new_config):
        # The states' results are the ones this exploit acts on: the trial's own (Ray updates
        # trial.last_result only after the scheduler) and the donor's checkpointed one.
        active = set(self._space.active(new_config))
        entry = {
            "trial_id": trial.trial_id,
            BUDGET_ATTR: (trial_state.last_result or trial.last_result).get(BUDGET_ATTR, 0),
            "copied": trial_to_clone.trial_id,
            "copied_at": (new_state.last_result or trial_to_clone.last_result).get(BUDGET_ATTR, 0),
            "config": {
                ".".join(path): at(new_config, path)
                for path in self._mutated_paths
                if path in active
            },
        }
        files.append_schedule(trial, (json.dumps(entry, default=str) + "\n").encode())


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
    if kind == "pb2":  # PB2's model needs every mutated value in every trial
        takes = [n for n in takes if by_name[n] not in space.conditions]
    if mutate is None:
        names = takes
    else:
        if not isinstance(mutate, list) or not all(isinstance(n, str) for n in mutate):
            raise UserError("a list of the space's parameter names", field="mutate")
        names = mutate
    for n in names:
        if n not in by_name:
            raise UserError(
                f"{n!r} is not a parameter of the space; allowed: {', '.join(by_name) or 'none'}"
                f"{did_you_mean(n, by_name)}",
                field="mutate",
            )
        if kind == "pb2" and by_name[n] in space.conditions:
            raise UserError(
                f"{n!r} applies only when {space.describe(by_name[n])}; pb2 mutates "
                "parameters that always apply (pbt takes conditional ones)",
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
    kept=None,
):
    """A PBT (``kind`` "pbt") or PB2 scheduler for the sweep's space, options checked.
    ``kept``: the checkpoints Ray keeps per trial (None: all)."""
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
        return BanditPBT(space=space, paths=paths, seed=seed, kept=kept, **common)
    return PBT(
        space=space,
        paths=paths,
        seed=seed,
        kept=kept,
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
