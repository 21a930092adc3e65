"""Optuna samplers that pickle: Optuna 5.1 gave its genetic samplers (NSGA-II, NSGA-III) a
``threading.Lock`` (``BaseGASampler._thread_lock``, ``optuna/samplers/_ga/_base.py``), which
``pickle``, ``copy.deepcopy`` and Ray's cloudpickle refuse, so neither a searcher's saved state
nor Ray's experiment snapshot could hold one. A sampler with locks is pickled without them and
gets new ones when loaded (``picklable``). A sampler pickled by an older Optuna lacks what a
newer one added (5.1: that lock and the GA samplers' population cache) and gets it as a new
sampler starts with it (``mend``). Written for Optuna 5.1."""

from __future__ import annotations

import copyreg
import threading
from typing import Any

_LOCKS = {type(threading.Lock()): threading.Lock, type(threading.RLock()): threading.RLock}


def _locks_of(obj: Any) -> dict[str, Any]:
    return {k: _LOCKS[type(v)] for k, v in vars(obj).items() if type(v) in _LOCKS}


def _reduce(sampler: Any) -> tuple:
    locks = _locks_of(sampler)
    state = {k: v for k, v in vars(sampler).items() if k not in locks}
    return _rebuild, (
        type(sampler),
        state,
        tuple((k, f is threading.RLock) for k, f in locks.items()),
    )


def _rebuild(cls: type[object], state: dict[str, Any], locks: tuple[tuple[str, bool], ...]) -> Any:
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    for name, reentrant in locks:
        setattr(obj, name, threading.RLock() if reentrant else threading.Lock())
    return obj


def picklable(sampler: Any) -> Any:
    """``sampler``, its class registered to pickle without its locks (once per class)."""
    if _locks_of(sampler) and copyreg.dispatch_table.get(type(sampler)) is not _reduce:
        copyreg.pickle(type(sampler), _reduce)
    return sampler


def mend(sampler: Any) -> None:
    """Give ``sampler`` the attributes a new sampler of its class starts with and it lacks
    (one pickled by an older Optuna): its caches start empty, its locks new."""
    try:
        fresh = type(sampler)()
    except Exception:  # a sampler that needs arguments: nothing to compare with
        return
    for name, value in vars(fresh).items():
        if name not in vars(sampler):
            setattr(sampler, name, value)
    picklable(sampler)


__all__ = ["mend", "picklable"]
