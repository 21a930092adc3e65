"""``auto``: a searcher chosen for the sweep from its space, budget, concurrency, objectives and
scheduler, by rules each taken from a ``compare`` study that ships in ``specs/studies/`` (its
results in ``benchmarks/results/``): the method that led that study on that kind of problem.

``choose`` is the rule table (``RULES``, first match wins); ``AutoSearch`` is the searcher: it
chooses as soon as it knows the space (given, or the Tuner's ``param_space``), builds the chosen
searcher with the same arguments and passes every call on to it. Its saved state holds the
choice and the chosen searcher, so a resumed or extended sweep goes on with the same one. A
sweep says its choice and the reason in its first lines (``Choice.line``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ray.tune.search import Searcher

from raytune_hpo.searchers._contract import SearcherContract
from raytune_hpo.searchers._kinds import discrete, unordered_dims
from raytune_hpo.sweep.space import SearchSpace

# Schedulers under which a learning searcher cannot run (population-based training) or that
# pair with one searcher only (BOHB's HyperBand): auto is refused there by the sweep's checks.
EARLY_STOPPING = ("asha", "median", "hyperband")


@dataclass(frozen=True)
class Rule:
    """When (a description), what, and the study that chose it."""

    when: str
    name: str
    study: str
    options: dict[str, Any] = field(default_factory=dict)


# The rules, in order; each names the study that measured it (README: "auto").
SEVERAL = Rule(
    "several objectives or constraints",
    "tpe",
    "study-mo-zdt (ZDT1, ZDT2, DTLZ2 in 5-D, 100 evaluations: tpe mean rank 2.50 of 8)",
)
CONDITIONAL = Rule(
    "a conditional space (when:)",
    "bayesopt",
    "conditional.json (Branches, 60 evaluations: bayesopt mean regret 0.35, tpe 0.72, "
    "the others 0.96 and above)",
)
CATEGORICAL = Rule(
    "a categorical of names",
    "approx_gradient",
    "frontier-tabular (HPOLib's 4 MLPs and NAS-Bench-201's 3 datasets, 100 evaluations: "
    "approx_gradient mean rank 2.37, pso 3.29, tpe 2.56 of 7)",
)
DISCRETE = Rule(
    "discrete values only (integers, choices of numbers)",
    "pso",
    "frontier-tabular (HPOBench's 8 tabular datasets, 100 evaluations: pso mean rank "
    "2.98, approx_gradient 3.51, tpe 3.85 of 7)",
)
CONTINUOUS = Rule(
    "floats and integer ranges, one trial at a time",
    "ngopt",
    "frontier-bbob-5d, frontier-bbob-10d (24 BBOB functions, 100 evaluations: ngopt mean rank "
    "2.54 and 2.36 of 7)",
)
CONTINUOUS_PARALLEL = Rule(
    "floats and integer ranges, several trials at once",
    "approx_gradient",
    "frontier-bbob-5d-c4, frontier-bbob-10d-c4 (24 BBOB functions in 5-D and 10-D, 100 "
    "evaluations, 4 at once: approx_gradient mean rank 2.88 and 2.54, pso 3.03 and 2.83, tpe 3.25 "
    "and 3.96 of 7)",
)
RULES = (
    SEVERAL,
    CONDITIONAL,
    CATEGORICAL,
    DISCRETE,
    CONTINUOUS,
    CONTINUOUS_PARALLEL,
)


@dataclass(frozen=True)
class Choice:
    """What auto chose, by which rule, for what it was told."""

    rule: Rule
    facts: str

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def line(self) -> str:
        """The sweep's first-lines note."""
        return (
            f"searcher auto chose {self.name}: {self.facts}; rule: {self.rule.when} -> "
            f"{self.name}, from {self.rule.study}"
        )


def choose(
    space: SearchSpace,
    *,
    budget: int | None = None,
    concurrency: int | None = None,
    objectives: Any = None,
    scheduler: str | None = None,
) -> Choice:
    """The rule that applies to this sweep (first match of ``RULES``)."""
    params = list(space.params.values())
    names = bool(unordered_dims(space))
    only_discrete = bool(params) and all(discrete(p) for p in params)
    if space.conditional:
        kinds = "conditional"
    elif names or only_discrete:
        kinds = "categoricals of names" if names else "discrete values only"
    else:
        kinds = "floats and integer ranges"
    several = objectives is not None and getattr(objectives, "ranked", False)
    facts = (
        f"{space.dims} parameter(s), {kinds}, {budget or 'unknown'} trials, "
        f"{concurrency or 'unlimited'} at once, "
        f"{'several objectives' if several else 'one objective'}, scheduler {scheduler or 'fifo'}"
    )
    if several:
        return Choice(SEVERAL, facts)
    if space.conditional:
        return Choice(CONDITIONAL, facts)
    if names:
        return Choice(CATEGORICAL, facts)
    if only_discrete:
        return Choice(DISCRETE, facts)
    if concurrency is None or concurrency > 1:  # unlimited: as many as the resources allow
        return Choice(CONTINUOUS_PARALLEL, facts)
    return Choice(CONTINUOUS, facts)


class AutoSearch(SearcherContract, Searcher):
    """The searcher ``choose`` picks, built with this one's arguments; every call goes to it.

    Args:
        space, metric, mode, seed, points_to_evaluate: as for ``UnitCubeSearcher``.
        budget: the sweep's trials (a rule reads it; it reaches the chosen searcher).
        max_concurrent: trials at once (a rule reads it; it reaches the chosen searcher).
        objectives: several objectives or constraints (the sweep gives them).
        scheduler: the sweep's scheduler (the runner gives it).
    """

    # The chosen searcher is saved as its own state (``_inner_state``, taken when this one's
    # is) and rebuilt from it: its class restores what it saves its own way.
    _saved = ("_args", "_choice", "_inner_state")
    _derived = ("_inner",)
    supports_multi_objective = True

    def __init__(
        self,
        space: SearchSpace | dict | None = None,
        metric: str | None = None,
        mode: str | None = None,
        *,
        seed: int | None = None,
        points_to_evaluate: list[dict] | None = None,
        budget: int | None = None,
        max_concurrent: int | None = None,
        objectives: Any = None,
        scheduler: str | None = None,
    ) -> None:
        super().__init__(space, metric, mode, points_to_evaluate=points_to_evaluate)
        self._args = {
            "seed": seed,
            "budget": budget,
            "max_concurrent": max_concurrent,
            "objectives": objectives,
            "scheduler": scheduler,
        }
        self._choice: Choice | None = None
        self._inner: Any = None
        self._inner_state: dict[str, Any] | None = None
        if self.space is not None:
            self._pick()

    @property
    def choice(self) -> Choice | None:
        """What auto chose (None until the space is known)."""
        return self._choice

    @property
    def inner(self):
        """The chosen searcher (None until the space is known)."""
        return self._inner

    def _pick(self) -> None:
        a = self._args
        self._choice = choose(
            self._space,
            budget=a["budget"],
            concurrency=a["max_concurrent"],
            objectives=a["objectives"],
            scheduler=a["scheduler"],
        )
        self._build(self._choice)

    def _build(self, choice: Choice) -> None:
        from raytune_hpo.searchers import create_searcher

        a = self._args
        told = {"objectives": a["objectives"]} if a["objectives"] is not None else {}
        self._inner = create_searcher(
            choice.name,
            space=self.space,
            metric=self._metric,
            mode=self._mode,
            seed=a["seed"],
            points_to_evaluate=self._user_points or None,
            budget=a["budget"],
            max_concurrent=a["max_concurrent"],
            **choice.rule.options,
            **told,
        )
        self._user_points = []  # the chosen searcher has them

    def _state(self) -> dict[str, Any]:
        inner = self._inner
        self._inner_state = None if inner is None else inner._state()
        return super()._state()

    def _restored(self) -> None:
        self._inner = None
        if self._choice is not None:
            self._build(self._choice)
            self._inner.set_state(self._inner_state)

    def _chosen(self):
        if self._inner is None:
            raise RuntimeError("AutoSearch: no search space yet (pass space= or a param_space)")
        return self._inner

    # ------------------------------------------------------------------ Tune hooks
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        adopted = self._merge_properties(metric, mode, config)
        if self._inner is None and self.space is not None:
            self._pick()
        if self._inner is not None:
            self._inner.set_search_properties(self._metric, self._mode, {}, **spec)
        return adopted

    def set_early_stopping(self, enabled: bool = True) -> None:
        if hasattr(self._chosen(), "set_early_stopping"):
            self._inner.set_early_stopping(enabled)

    def suggest(self, trial_id: str):
        return self._chosen().suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._chosen().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        self._chosen().on_trial_complete(trial_id, result, error=error)

    def add_evaluated_point(self, parameters: dict, value: float | None, *args, **kwargs):
        self._chosen().add_evaluated_point(parameters, value, *args, **kwargs)

    @property
    def observations(self):
        return self._chosen().observations

    @property
    def prior(self):
        return self._chosen().prior


__all__ = ["RULES", "AutoSearch", "Choice", "Rule", "choose"]
