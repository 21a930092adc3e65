"""The searcher contract (``docs/searchers.md``) as checks a team can run on its own plug-in
searchers (see ``searchers/README.md``), and that our own contract tests run on ours.

Each check takes ``make(seed) -> Searcher``: a new searcher over :data:`MIXED` (or a space of
your own with a matching ``objective``), metric ``loss``, mode ``min``; ``check_conditional``
one over :data:`CONDITIONAL` (a space with ``when:``). They raise ``AssertionError`` saying
what broke.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from raytune_hpo.names import BUDGET_ATTR

ACT = object()  # a categorical value must come back as the very object given

MIXED: dict[str, Any] = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "momentum": {"type": "float", "low": 0.0, "high": 0.99},
    "units": {"type": "int", "low": 4, "high": 64, "log": True},
    "layers": {"type": "int", "low": 1, "high": 4},
    "act": {"type": "categorical", "choices": ["relu", ACT, 3]},
    "opt": {"inner": {"type": "float", "low": -1.0, "high": 1.0}, "const": "kept"},
    "fixed": 7,
}

# A conditional space (``when:``): momentum only under SGD, beta1 under Adam or RMSprop, the
# width of a third layer only with three layers.
CONDITIONAL: dict[str, Any] = {
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
    "momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"optimizer": "sgd"}},
    "beta1": {
        "type": "float",
        "low": 0.8,
        "high": 0.999,
        "when": {"optimizer": ["adam", "rmsprop"]},
    },
    "layers": {"type": "int", "low": 1, "high": 3},
    "width3": {"type": "int", "low": 8, "high": 128, "log": True, "when": {"layers": [3]}},
    "fixed": 7,
}

Make = Callable[[int], Any]


def objective(cfg: dict[str, Any]) -> float:
    """A smooth loss over :data:`MIXED`."""
    return (math.log10(cfg["lr"]) + 3) ** 2 + (cfg["units"] - 16) ** 2 / 100 + cfg["opt"]["inner"]


def drive(
    s,
    n: int,
    start: int = 0,
    complete: bool = True,
    f=objective,
    *,
    metric: str = "loss",
    prefix: str = "t",
    report: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> list[dict]:
    """Suggest up to ``n`` configs with ids ``{prefix}{i}``, completing each with
    ``{metric: f(cfg), BUDGET_ATTR: 1}`` as Tune reports it (or with ``report(cfg)``, a whole
    result: several objectives, constraint metrics); returns them."""
    from ray.tune.search import Searcher

    out = []
    for i in range(start, start + n):
        cfg = s.suggest(f"{prefix}{i}")
        if cfg is None or cfg == Searcher.FINISHED:
            break
        out.append(cfg)
        if complete:
            result = report(cfg) if report else {metric: f(cfg), BUDGET_ATTR: 1}
            s.on_trial_complete(f"{prefix}{i}", result)
    return out


def check_bounds_and_types(make: Make, n: int = 40) -> None:
    """1. Inside the bounds, with the right types; categoricals are the objects given;
    constants and nesting kept."""
    cfgs = drive(make(0), n)
    assert len(cfgs) >= min(n, 20), f"only {len(cfgs)} suggestions"
    for c in cfgs:
        assert 1e-5 <= c["lr"] <= 1e-1 and isinstance(c["lr"], float), c
        assert 0.0 <= c["momentum"] <= 0.99, c
        assert isinstance(c["units"], int) and 4 <= c["units"] <= 64, c
        assert isinstance(c["layers"], int) and 1 <= c["layers"] <= 4, c
        assert any(c["act"] is v for v in ("relu", ACT, 3)), c
        assert -1.0 <= c["opt"]["inner"] <= 1.0 and c["opt"]["const"] == "kept", c
        assert c["fixed"] == 7, c


def check_seeding(make: Make, n: int = 15) -> None:
    """2. Same seed, same sequence; another seed, another sequence."""
    a, b, c = drive(make(1), n), drive(make(1), n), drive(make(2), n)
    assert a == b, "the same seed gave different sequences"
    assert a != c, "different seeds gave the same sequence"


def check_save_restore(make: Make) -> None:
    """3. ``save``/``restore`` mid-run continues exactly, suggested-but-unfinished trials
    included; no temporary files are left."""
    with tempfile.TemporaryDirectory() as tmp:
        ref = make(3)
        drive(ref, 8)
        pending = [(f"p{i}", ref.suggest(f"p{i}")) for i in range(2)]
        assert all(isinstance(c, dict) for _, c in pending), "no suggestion to leave pending"
        path = os.path.join(tmp, "searcher.pkl")
        ref.save(path)
        restored = make(99)  # another seed: everything must come from the file
        restored.restore(path)
        for s in (ref, restored):
            for tid, cfg in pending:
                s.on_trial_complete(tid, {"loss": objective(cfg)})
        assert drive(restored, 12, start=100) == drive(ref, 12, start=100), "restore diverged"
        assert os.listdir(tmp) == ["searcher.pkl"], "temporary files left behind"


def check_bad_results(make: Make) -> None:
    """4. NaN/inf, failed trials, missing or junk metrics and unknown or repeated ids never
    crash the searcher; it goes on suggesting."""
    s = make(4)
    cfgs = {f"b{i}": s.suggest(f"b{i}") for i in range(6)}
    cfgs = {k: v for k, v in cfgs.items() if isinstance(v, dict)}
    results: list[dict[str, Any] | None]
    results = [{"loss": float("nan")}, {"loss": float("inf")}, None, {"other": 1.0}]
    results += [{"loss": "oops"}, {"loss": 0.5}]
    for (tid, _), res in zip(cfgs.items(), results, strict=False):
        s.on_trial_complete(tid, res, error=res is None)
    s.on_trial_complete("never-suggested", {"loss": 0.1})
    s.on_trial_complete("b0", {"loss": 0.2})  # completed twice
    if hasattr(s, "observations"):  # ours: NaN and failures count as the worst value
        _, losses = s.observations
        assert len(losses) == len(cfgs), "unknown or repeated trial ids were recorded"
        assert np.isinf(losses[: min(5, len(cfgs))]).all(), "a bad result was not the worst"
    assert drive(s, 10, start=50), "no suggestion after bad results"


def conditional_objective(cfg: dict[str, Any]) -> float:
    """A loss over :data:`CONDITIONAL` that raises ``AssertionError`` on a configuration with
    a parameter that does not apply, or without one that does."""
    need = {"optimizer", "layers", "momentum" if cfg["optimizer"] == "sgd" else "beta1"}
    need |= {"width3"} if cfg["layers"] == 3 else set()
    got = set(cfg) & (set(CONDITIONAL) - {"fixed"})
    assert got == need, f"{cfg}: holds {sorted(got)}, should hold {sorted(need)}"
    assert cfg["fixed"] == 7, cfg
    loss = cfg["layers"] / 10 + (cfg.get("momentum", 0.9) - 0.9) ** 2
    return loss + (math.log(cfg["width3"]) - 3) ** 2 if "width3" in cfg else loss


def check_conditional(make: Make, n: int = 24) -> None:
    """8. Over :data:`CONDITIONAL` (``make(seed)`` builds the searcher over it), every
    suggestion holds exactly the parameters that apply, inside their bounds, and the search
    reaches every branch."""
    from raytune_hpo.sweep.space import SearchSpace

    space = SearchSpace.from_dict(CONDITIONAL)
    cfgs = drive(make(0), n, f=conditional_objective)
    assert len(cfgs) >= min(n, 12), f"only {len(cfgs)} suggestions"
    problems = [p for c in cfgs for p in space.problems(c)]
    assert not problems, problems[:3]
    assert {c["optimizer"] for c in cfgs} == {"adam", "sgd", "rmsprop"}, "a branch never tried"


def check_contract(make: Make) -> None:
    """Checks 1-4 of the contract (5, concurrency, needs a Tuner: see the project's tests)."""
    for check in (check_bounds_and_types, check_seeding, check_save_restore, check_bad_results):
        check(make)


__all__ = [
    "ACT",
    "CONDITIONAL",
    "MIXED",
    "check_bad_results",
    "check_bounds_and_types",
    "check_conditional",
    "check_contract",
    "check_save_restore",
    "check_seeding",
    "conditional_objective",
    "drive",
    "objective",
]
