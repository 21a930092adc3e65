"""The half of the searcher contract (``docs/searchers.md``) that every searcher of ours shares,
whether it is our own algorithm (``UnitCubeSearcher``) or an adapter over a library (Optuna,
HpBandSter): metric and mode checked once, the space (``self.space``) given or taken from the
Tuner's ``param_space``, suggested-but-unfinished trials, NaN/inf/failed results scored as the
worst value, unknown or repeated trial ids ignored, ``points_to_evaluate`` kept, observations
for the contract tests, earlier results told through Ray's ``add_evaluated_point`` (warm start)
recorded as ``prior``, and the saved state.

The saved state is explicit: each class names the attributes it saves in ``_saved`` and the
ones it rebuilds after a restore in ``_derived``; a class saves what the classes it derives
from save, less what it derives itself, and nothing else. It is versioned: ``{"searcher":
class name, "version": _state_version, "state": {attribute: value}}``, and ``set_state``
refuses another class's state or a version it does not know with one line. A class that
changes what it saves bumps its ``_state_version``; an attribute added to the state names in
``_added`` the version that added it and the value a state of an earlier version restores it
to, so that the states users saved before still load. ``save`` writes the state atomically (a
temporary file, then a rename).

A user's subclass (Ray's users add hooks this way: a counter in ``on_trial_result``) keeps what
it adds: every attribute that no class declares (in ``_saved`` or ``_derived``) is saved too,
under ``extra``, as Ray's own ``Searcher.save`` saves the whole ``__dict__``, and restored with
the rest. One that cannot be pickled (a lock, an open file) is left out with a warning naming
it; a subclass declares such an attribute in ``_derived`` and rebuilds it in ``_restored``.
"""

from __future__ import annotations

import copy
import math
import os
import pickle
import tempfile
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar, cast

import numpy as np

from raytune_hpo.errors import UserError
from raytune_hpo.sweep.space import SearchSpace

MODES = ("min", "max")
STATE_KEYS = ("searcher", "version", "state")
EXTRA = "extra"  # a subclass's own attributes (module docstring), beside STATE_KEYS

_T = TypeVar("_T")


def set_up(value: _T | None, name: str) -> _T:
    """``value`` of an attribute that ``_setup`` fills in (None until then); an error naming
    it when it is used before."""
    if value is None:
        raise RuntimeError(f"{name} is used before the searcher was set up (no suggest yet)")
    return value


def check_mode(mode: Any) -> None:
    if mode not in (None, *MODES):
        raise UserError(f"got {mode!r}; allowed: {', '.join(MODES)}", field="mode")


def as_space(space: Any, *, where: str = "space") -> SearchSpace | None:
    """``space`` as a SearchSpace with at least one parameter (None stays None)."""
    if space is None:
        return None
    if isinstance(space, Mapping):
        space = SearchSpace.from_dict(space)
    if not isinstance(space, SearchSpace):
        raise UserError(
            f"expected a SearchSpace or a dict, got {type(space).__name__}", field=where
        )
    if space.dims == 0:
        raise UserError("has no parameter to search", field=where)
    return space


def loss_of(result: Mapping | None, metric: str | None, mode: str | None, error: bool) -> float:
    """The metric as a value to minimise; +inf for failed, missing, junk, NaN or inf results."""
    if error or not result or metric not in result:
        return math.inf
    try:
        value = float(result[metric])
    except (TypeError, ValueError):
        return math.inf
    if not math.isfinite(value):
        return math.inf  # NaN counts as the worst value
    return value if mode != "max" else -value


class Rows:
    """Append-only float matrix with amortised O(1) appends."""

    def __init__(self, cols: int) -> None:
        self._buf = np.empty((16, cols))
        self.n = 0

    def append(self, row: np.ndarray) -> None:
        if self.n == len(self._buf):
            self._buf = np.concatenate([self._buf, np.empty_like(self._buf)])
        self._buf[self.n] = row
        self.n += 1

    @property
    def rows(self) -> np.ndarray:
        return self._buf[: self.n]


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in its folder and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".searcher-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class SearcherContract:
    """Cooperative mixin for ``ray.tune.search.Searcher`` subclasses (it comes before
    ``Searcher`` in the bases and reaches it through ``super().__init__``)."""

    _saved: ClassVar[tuple[str, ...]] = (
        "space",
        "_own_space",
        "_metric",
        "_mode",
        "_user_points",
        "_live_units",
        "_obs_x",
        "_obs_y",
        "_prior_x",
        "_prior_y",
    )
    _derived: ClassVar[tuple[str, ...]] = ()
    _state_version: ClassVar[int] = 1
    # Attributes added to the state after version 1: name -> (the version that added it, what
    # a state of an earlier version restores it to).
    _added: ClassVar[dict[str, tuple[int, Any]]] = {}
    # Ray's Searcher sets these; metric and mode fill them when unset (_merge_properties).
    _metric: str | None
    _mode: str | None

    def __init__(
        self,
        space: Any = None,
        metric: str | None = None,
        mode: str | None = None,
        *,
        points_to_evaluate: list[dict] | None = None,
        **kwargs: Any,
    ) -> None:
        check_mode(mode)
        self.space: SearchSpace | None = as_space(space)
        self._own_space = self.space is not None
        self._user_points = [dict(p) for p in (points_to_evaluate or [])]
        self._live_units: dict[str, np.ndarray] = {}
        self._obs_x: Rows | None = None
        self._obs_y: list[float] = []
        self._prior_x: Rows | None = None
        self._prior_y: list[float] = []
        # A mixin: the next class in the MRO is Ray's Searcher, which mypy cannot see here.
        cast(Any, super()).__init__(metric=metric, mode=mode, **kwargs)

    def _merge_properties(self, metric: str | None, mode: str | None, config: Mapping) -> bool:
        """``set_search_properties``' shared half: metric and mode fill what is unset; the
        space comes from ``config`` (the Tuner's param_space) unless the searcher has its own.
        Returns whether ``config`` was adopted (Ray's convention: False with an own space)."""
        if metric and not self._metric:
            self._metric = metric
        if mode and not self._mode:
            check_mode(mode)
            self._mode = mode
        if self._own_space:
            return False
        if config:
            self.space = as_space(config, where="param_space")
        return True

    def _require_space(self) -> SearchSpace:
        if self.space is None:
            raise RuntimeError(
                f"{type(self).__name__}: no search space (pass space= or a Tuner param_space)"
            )
        return self.space

    @property
    def _space(self) -> SearchSpace:
        """``space``, known: given to the constructor or taken from the Tuner's param_space
        (``set_search_properties``); an error saying so when neither has happened."""
        return self._require_space()

    def _require_metric_mode(self, what: str) -> tuple[str, str]:
        if not self._metric or not self._mode:
            raise RuntimeError(f"{type(self).__name__}: metric and mode must be set before {what}")
        return self._metric, self._mode

    def _track(self, trial_id: str, u: np.ndarray) -> None:
        self._live_units[trial_id] = u

    def _finish(self, trial_id: str, result: Mapping | None, error: bool) -> float | None:
        """Record a completed trial and return its loss; None for an unknown or repeated id."""
        u = self._live_units.pop(trial_id, None)
        if u is None:
            return None
        loss = loss_of(result, self._metric, self._mode, error)
        if self._obs_x is None:
            self._obs_x = Rows(len(u))
        self._obs_x.append(u)
        self._obs_y.append(loss)
        return loss

    def _prior_point(
        self, parameters: Mapping, value: float | None, error: bool
    ) -> tuple[np.ndarray, float]:
        """An earlier result (``add_evaluated_point``) as a unit point and a loss, recorded
        in ``prior``. Like Ray's own searchers, this needs the space, metric and mode."""
        space = self._require_space()
        self._require_metric_mode("add_evaluated_point")
        u = space.to_unit(parameters)
        result = None if value is None else {self._metric: value}
        loss = loss_of(result, self._metric, self._mode, error)
        if self._prior_x is None:
            self._prior_x = Rows(len(u))
        self._prior_x.append(u)
        self._prior_y.append(loss)
        return u, loss

    @property
    def prior(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit points and losses of earlier results told through ``add_evaluated_point``."""
        if self._prior_x is None:
            return np.empty((0, 0)), np.empty(0)
        return self._prior_x.rows, np.asarray(self._prior_y)

    def _worst_finite(self) -> float | None:
        finite = [y for y in (*self._obs_y, *self._prior_y) if math.isfinite(y)]
        return max(finite) if finite else None

    @property
    def observations(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit points and losses (minimised; +inf = failed) of completed trials."""
        if self._obs_x is None:
            return np.empty((0, 0)), np.empty(0)
        return self._obs_x.rows, np.asarray(self._obs_y)

    # ------------------------------------------------------------------ state
    @classmethod
    def state_names(cls) -> tuple[str, ...]:
        """The attributes a state of this class holds: the ``_saved`` of every class it
        derives from, base classes first, less their ``_derived``."""
        names: list[str] = []
        derived: set[str] = set()
        for klass in reversed(cls.__mro__):
            names += [n for n in vars(klass).get("_saved", ()) if n not in names]
            derived.update(vars(klass).get("_derived", ()))
        return tuple(n for n in names if n not in derived)

    @classmethod
    def added_names(cls) -> dict[str, tuple[int, Any]]:
        """``_added`` of every class it derives from (base classes first)."""
        out: dict[str, tuple[int, Any]] = {}
        for klass in reversed(cls.__mro__):
            out.update(vars(klass).get("_added", {}))
        return out

    @classmethod
    def derived_names(cls) -> frozenset[str]:
        """``_derived`` of every class it derives from: rebuilt after a restore, not saved."""
        return frozenset(n for klass in cls.__mro__ for n in vars(klass).get("_derived", ()))

    def _extra(self) -> dict[str, Any]:
        """The attributes no class declares (a user's subclass's own): saved as they are;
        one that cannot be pickled is left out with a warning naming it."""
        declared = {*self.state_names(), *self.derived_names()}
        extra = {k: v for k, v in vars(self).items() if k not in declared}
        for name, value in list(extra.items()):
            try:
                pickle.dumps(value)
            except Exception as e:  # a lock, a file, a client: cannot travel in a state
                del extra[name]
                warnings.warn(
                    f"{type(self).__qualname__}.{name} is not saved with the searcher's state "
                    f"({type(e).__name__}: {e}); declare it in _derived and rebuild it in "
                    "_restored",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return extra

    def _state(self) -> dict[str, Any]:
        attrs = {name: getattr(self, name) for name in self.state_names()}
        state = {"searcher": type(self).__qualname__, "version": self._state_version}
        state["state"] = attrs
        extra = self._extra()
        if extra:  # our own classes declare every attribute: their states keep STATE_KEYS
            state[EXTRA] = extra
        return state

    def get_state(self) -> dict[str, Any]:
        return copy.deepcopy(self._state())

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (``get_state``'s). A space given to the constructor is kept
        (its categorical values stay the very objects the user gave)."""
        attrs = self._checked(state)
        own = self.space if self._own_space else None
        extra = state.get(EXTRA) or {}
        for name, value in copy.deepcopy({**extra, **attrs}).items():
            setattr(self, name, value)
        if own is not None:
            self.space, self._own_space = own, True
        self._restored()

    def _checked(self, state: Any) -> Mapping[str, Any]:
        """The attributes of ``state`` (one of any version from 1 up to this class's): those a
        later version added take the value ``_added`` gives them."""
        cls, version = type(self).__qualname__, self._state_version
        keys = set(state) - {EXTRA} if isinstance(state, Mapping) else set()
        if keys != set(STATE_KEYS) or not isinstance(state.get(EXTRA, {}), Mapping):
            raise UserError(f"not a saved state of {cls} (one from before states were versioned?)")
        if state["searcher"] != cls:
            raise UserError(f"a saved state of {state['searcher']}, not of {cls}")
        old = state["version"]
        if isinstance(old, bool) or not isinstance(old, int) or not 1 <= old <= version:
            reads = f"version {version}" if version == 1 else f"versions 1 to {version}"
            raise UserError(
                f"state version {old!r} of {cls} is unknown here; this version reads {reads}"
            )
        added = {n: d for n, (v, d) in self.added_names().items() if v > old}
        attrs = state["state"]
        want = set(self.state_names()) - set(added)
        if not isinstance(attrs, Mapping) or set(attrs) != want:
            raise UserError(f"a state of {cls} version {old} with other entries")
        return {**copy.deepcopy(added), **attrs}

    def _restored(self) -> None:
        """Rebuild the ``_derived`` attributes after ``set_state``."""

    def save(self, checkpoint_path: str) -> None:
        """Write the state atomically (temporary file, then rename); Tune calls this."""
        write_atomically(checkpoint_path, pickle.dumps(self._state()))

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        try:
            self.set_state(state)
        except UserError as e:
            raise e.in_file(checkpoint_path) from None


__all__ = [
    "Rows",
    "SearcherContract",
    "as_space",
    "check_mode",
    "loss_of",
    "set_up",
    "write_atomically",
]
