"""COCO's BBOB suites as study problems: the 24 noiseless functions (``bbob``) and their
mixed-integer variants (``bbob-mixint``), evaluated by COCO's own C code (``cocoex``, the
``bench`` extra: ``pip install -e ".[bench]"``), nothing downloaded.

Each function number comes in instances (a seeded shift and rotation of the function, and its
optimal value f_opt); a study scores a configuration by its regret ``f(x) - f_opt``. BBOB's box
is [-5, 5]^d; in ``bbob-mixint`` the first four fifths of the variables are integers with 2, 4,
8 and 16 values. References: Hansen, Finck, Ros and Auger, "Real-parameter black-box
optimization benchmarking 2009: noiseless functions definitions" (INRIA RR-6829); Hansen et al.,
"COCO: a platform for comparing continuous optimizers in a black-box setting" (Optimization
Methods and Software, 2021); Tusar, Brockhoff and Hansen, "Mixed-integer benchmark problems for
single- and bi-objective optimization" (GECCO 2019).

The problem API is the test functions' (``space``, ``at``, ``minimum``, ``max_budget``) plus
``objectives``. Studies score several objectives on ``study.pareto``'s problems (a dict from
``at``, the hypervolume of a run's points); ``bbob-biobj`` is still refused with one line: its
objectives are unbounded over the box, so ``study.pareto``'s reference rule does not carry
over, and COCO's own indicator (normalised by the ideal and nadir points) is not yet in.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from raytune_hpo.errors import UserError

EXTRA = 'the bench extra: pip install -e ".[bench]" (coco-experiment)'

# The suites' dimensions and function numbers, as COCO defines them (a test holds them equal to
# cocoex's). bbob-mixint above 40 dimensions switches to the large-scale functions, whose
# optimum cocoex does not give; those dimensions are left out.
SUITES: dict[str, dict[str, Any]] = {
    "bbob": {"dims": (2, 3, 5, 10, 20, 40), "functions": 24},
    "bbob-mixint": {"dims": (5, 10, 20, 40), "functions": 24},
}
MULTI_OBJECTIVE = {"bbob-biobj": 55}  # suite -> function count; needs several objectives

# bbob-mixint scales each bbob function by this factor (COCO's suite_bbob_mixint.c), so its
# optimum is the factor times the bbob optimum (a test checks it at COCO's optimal points).
_MIXINT_SCALE: tuple[float, ...]
_MIXINT_SCALE = (1, 1e-3, 1e-1, 1e-1, 1, 1e-2, 1, 1e-2, 1e-2, 1e-3, 1e-2, 1e-4, 1e-1, 1)
_MIXINT_SCALE += (1e-1, 1, 10, 1, 10, 1e-1, 1, 1, 10, 1e-1)  # f15 to f24

NAMES = (
    "Sphere",
    "Ellipsoidal (separable)",
    "Rastrigin (separable)",
    "Bueche-Rastrigin",
    "Linear slope",
    "Attractive sector",
    "Step ellipsoidal",
    "Rosenbrock",
    "Rosenbrock (rotated)",
    "Ellipsoidal",
    "Discus",
    "Bent cigar",
    "Sharp ridge",
    "Different powers",
    "Rastrigin",
    "Weierstrass",
    "Schaffers F7",
    "Schaffers F7 (ill-conditioned)",
    "Griewank-Rosenbrock F8F2",
    "Schwefel x sin(x)",
    "Gallagher 101 peaks",
    "Gallagher 21 peaks",
    "Katsuura",
    "Lunacek bi-Rastrigin",
)

# COCO's five groups of the 24 functions (Hansen et al. 2009): first and last function number.
GROUPS: dict[str, tuple[int, int]] = {
    "separable": (1, 5),
    "low or moderate conditioning": (6, 9),
    "high conditioning, unimodal": (10, 14),
    "multi-modal, adequate global structure": (15, 19),
    "multi-modal, weak global structure": (20, 24),
}


def group_of(function: int) -> str:
    """The COCO group of a function number (1 to 24)."""
    for name, (lo, hi) in GROUPS.items():
        if lo <= function <= hi:
            return name
    raise UserError(f"no COCO group holds {function}; allowed: 1 to 24", field="function")


def problem_id(suite: str, function: int, dims: int, instance: int) -> str:
    """COCO's id of a problem, e.g. ``bbob_f008_i01_d05``."""
    return f"{suite}_f{function:03d}_i{instance:02d}_d{dims:02d}"


def cocoex():
    """The ``cocoex`` module, or a one-line error naming the extra that installs it."""
    try:
        return importlib.import_module("cocoex")
    except ImportError:
        raise UserError(f"COCO problems need {EXTRA}", field="problems") from None


@functools.lru_cache(maxsize=256)
def _coco(suite: str, function: int, dims: int, instance: int):
    """(COCO's problem, its optimal value), built once per process."""
    ex = cocoex()
    options = f"function_indices: {function} dimensions: {dims}"
    problem = ex.Suite(suite, f"instances: {instance}", options)[0]
    f_opt = float(ex.BareProblem("bbob", function, dims, instance).best_value())
    if suite == "bbob-mixint":
        f_opt *= _MIXINT_SCALE[function - 1]
    return problem, f_opt


@dataclass(frozen=True)
class CocoProblem:
    """One problem of a COCO suite: ``suite`` (bbob, bbob-mixint), function number, dimension
    and instance; parameters ``x0`` .. ``x{d-1}``."""

    suite: str
    function: int
    dims: int
    instance: int = 1

    objectives = 1
    max_budget = 1  # a single fidelity

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise UserError(f"got {self.suite!r}; allowed: {', '.join(SUITES)}", field="suite")
        for field, check, value in (
            ("function", check_functions, self.function),
            ("dims", check_dims, self.dims),
        ):
            try:
                check(self.suite, value)
            except ValueError as e:  # the spec's checks, here for problems built in Python
                raise UserError(str(e), field=field) from None
        if self.instance < 1:
            raise UserError(f"must be >= 1, got {self.instance}", field="instance")

    @property
    def name(self) -> str:
        return problem_id(self.suite, self.function, self.dims, self.instance)

    @property
    def group(self) -> str:
        return group_of(self.function)

    @property
    def minimum(self) -> float:
        """f_opt, the optimal value of this instance."""
        return _coco(self.suite, self.function, self.dims, self.instance)[1]

    @property
    def integers(self) -> int:
        """How many of the variables (the first ones) are integers."""
        return int(self._problem.number_of_integer_variables)

    @property
    def bounds(self) -> tuple[tuple[float, float], ...]:
        p = self._problem
        return tuple(zip(map(float, p.lower_bounds), map(float, p.upper_bounds), strict=True))

    @property
    def _problem(self):
        return _coco(self.suite, self.function, self.dims, self.instance)[0]

    def space(self) -> dict[str, Any]:
        """The box in the YAML form of a sweep's ``space`` (integers as ``int`` ranges)."""
        out: dict[str, Any] = {}
        for i, (lo, hi) in enumerate(self.bounds):
            if i < self.integers:
                out[f"x{i}"] = {"type": "int", "low": int(lo), "high": int(hi)}
            else:
                out[f"x{i}"] = {"type": "float", "low": lo, "high": hi}
        return out

    def __call__(self, config: dict[str, Any]) -> float:
        x = np.array([config[f"x{i}"] for i in range(self.dims)], dtype=float)
        return float(self._problem(x))

    def at(self, config: dict[str, Any], budget: float = 1, rng=None) -> float:
        """The value (the same at every budget; the test functions' API)."""
        return self(config)

    def regret(self, value: float) -> float:
        return value - self.minimum


def expand(suite: str, functions: int | list[int] | str) -> list[int]:
    """Function numbers of a study entry: one, a list, or ``all``."""
    count = SUITES[suite]["functions"]
    if functions == "all":
        return list(range(1, count + 1))
    if isinstance(functions, str):  # check_functions admits no other word
        raise ValueError(f"functions: a number, a list of them or all; got {functions!r}")
    return [functions] if isinstance(functions, int) else list(functions)


def check_functions(suite: str, functions: Any) -> Any:
    """A ValueError naming the allowed values unless ``functions`` is a function number of the
    suite, a list of them, or ``all``."""
    if suite in MULTI_OBJECTIVE:
        raise ValueError(
            f"{suite} is not yet a study problem; several objectives: function zdt1, zdt2 or "
            "dtlz2; COCO: bbob or bbob-mixint"
        )
    count = SUITES[suite]["functions"]
    numbers = [functions] if isinstance(functions, int) else functions
    if functions == "all":
        return functions
    if not isinstance(numbers, list) or not numbers:
        raise ValueError(f"give function numbers 1 to {count} (a list) or all")
    bad = [n for n in numbers if isinstance(n, bool) or not isinstance(n, int)]
    bad += [n for n in numbers if isinstance(n, int) and not 1 <= n <= count]
    if bad:
        raise ValueError(f"unknown function number {bad[0]!r}; allowed: 1 to {count} or all")
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"each function once, got {numbers}")
    return functions


def check_dims(suite: str, dims: int | None) -> int:
    """A ValueError naming the suite's dimensions unless ``dims`` is one of them."""
    allowed = ", ".join(map(str, SUITES[suite]["dims"]))
    if dims is None:
        raise ValueError(f"{suite} needs dims: one of {allowed}")
    if dims not in SUITES[suite]["dims"]:
        raise ValueError(f"{suite} comes in dims {allowed}; got {dims}")
    return dims


__all__ = [
    "EXTRA",
    "GROUPS",
    "MULTI_OBJECTIVE",
    "NAMES",
    "SUITES",
    "CocoProblem",
    "check_dims",
    "check_functions",
    "cocoex",
    "expand",
    "group_of",
    "problem_id",
]
