"""The searcher contract (``docs/searchers.md``), run against every Searcher in SEARCHERS, plus
each algorithm's own properties."""

import math
import pickle

import numpy as np
import pytest
from ray.tune.search import ConcurrencyLimiter, Searcher

from raytune_hpo import testing
from raytune_hpo.searchers import (
    SEARCHERS,
    ApproxGradientSearch,
    LatinHypercubeSearch,
    PSOSearch,
    RSASearch,
    SobolSearch,
    create_searcher,
)
from raytune_hpo.testing import ACT, MIXED, drive, objective


def contract_names():
    out = []
    for name in SEARCHERS:
        if isinstance(make(name, seed=0), Searcher):
            out.append(name)
    return out


def make(name, seed=0, space=MIXED, **kw):
    if name in ("lhs", "rsa"):
        kw.setdefault("budget", 40)
    return create_searcher(name, space=space, metric="loss", mode="min", seed=seed, **kw)


CONTRACT = contract_names()


def test_every_custom_searcher_is_under_contract():
    assert {"sobol", "lhs", "rsa", "hypertiling", "pso", "approx_gradient"} <= set(CONTRACT)


def seeded(name):
    return lambda seed: make(name, seed=seed)


@pytest.mark.parametrize("name", CONTRACT)
def test_bounds_and_types(name):
    testing.check_bounds_and_types(seeded(name))


@pytest.mark.parametrize("name", CONTRACT)
def test_seeding(name):
    testing.check_seeding(seeded(name))


@pytest.mark.parametrize("name", CONTRACT)
def test_save_restore_mid_run_continues_exactly(name):
    testing.check_save_restore(seeded(name))


@pytest.mark.parametrize("name", CONTRACT)
def test_bad_results_never_crash_and_nan_is_worst(name):
    assert hasattr(make(name), "observations")  # so the check below compares the losses
    testing.check_bad_results(seeded(name))


@pytest.mark.parametrize("name", CONTRACT)
def test_concurrency_limiter_runs_trials_at_once(name):
    s = ConcurrencyLimiter(make(name, seed=5), max_concurrent=2)
    first = [s.suggest(f"c{i}") for i in range(3)]
    assert isinstance(first[0], dict) and isinstance(first[1], dict)
    assert first[2] is None  # the limiter holds the third back
    s.on_trial_complete("c0", {"loss": 1.0})
    assert isinstance(s.suggest("c3"), dict)


@pytest.mark.parametrize("name", CONTRACT)
def test_the_state_names_every_attribute_it_keeps(name):
    """What a searcher saves is declared: each attribute is saved (``_saved``) or rebuilt after
    a restore (``_derived``), so a new attribute cannot join the saved format unseen."""
    s = make(name, seed=7)
    drive(s, 6)
    s.suggest("pending")
    derived = {n for k in type(s).__mro__ for n in vars(k).get("_derived", ())}
    undeclared = set(vars(s)) - set(type(s).state_names()) - derived
    assert not undeclared, f"{name}: neither saved nor derived: {sorted(undeclared)}"
    state = s.get_state()
    assert state["searcher"] == type(s).__qualname__ and state["version"] >= 1
    assert set(state["state"]) == set(type(s).state_names())


@pytest.mark.parametrize("name", CONTRACT)
def test_a_state_of_another_version_or_class_is_refused_in_one_line(name, tmp_path):
    s = make(name, seed=8)
    drive(s, 3)
    state = s.get_state()
    other = "SobolSearch" if name != "sobol" else "PSOSearch"
    bad = [
        ({**state, "version": state["version"] + 1}, "state version .* is unknown here"),
        ({**state, "searcher": other}, f"a saved state of {other}, not of"),
        (dict(state["state"]), "not a saved state of"),  # the format before versions
        ({**state, "state": {**state["state"], "_extra": 1}}, "with other entries"),
    ]
    for wrong, message in bad:
        with pytest.raises(ValueError, match=message) as e:
            make(name, seed=8).set_state(wrong)
        assert "\n" not in str(e.value)
    path = tmp_path / "searcher.pkl"
    path.write_bytes(pickle.dumps(bad[0][0]))
    with pytest.raises(ValueError, match=f"^{path}: state version"):
        make(name).restore(str(path))


# ----------------------------------------------------------------------------- algorithms
UNIT2 = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "y": {"type": "float", "low": 0, "high": 1},
}


def bowl(c, d=None):
    return sum((c[k] - 0.3) ** 2 for k in c if k.startswith("x"))


def best_after(searcher, f, n):
    best, i = math.inf, 0
    while i < n:
        cfg = searcher.suggest(str(i))
        if cfg == Searcher.FINISHED:
            break
        assert cfg is not None
        best = min(best, f(cfg))
        searcher.on_trial_complete(str(i), {"loss": f(cfg)})
        i += 1
    return best


def random_best(f, space, n, seed):
    from raytune_hpo.sweep.space import SearchSpace

    sp, rng = SearchSpace.from_dict(space), np.random.default_rng(seed)
    return min(f(sp.from_unit(u)) for u in rng.random((n, sp.dims)))


def test_sobol_points_are_balanced():
    s = SobolSearch(UNIT2, "loss", "min", seed=0)
    pts = np.array([[c["x"], c["y"]] for c in drive_fn(s, bowl, 64)])
    for j in range(2):  # a (0, m, 2)-net: one point in each of 64 equal strata per dimension
        assert sorted(np.floor(pts[:, j] * 64).astype(int)) == list(range(64))
    quads = np.floor(pts * 8).astype(int)
    assert len({tuple(q) for q in quads}) == 64  # and one per cell of the 8x8 grid


def test_lhs_one_point_per_stratum_then_finished():
    space = {f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(3)}
    s = LatinHypercubeSearch(space, "loss", "min", seed=1, budget=20)
    cfgs = drive_fn(s, bowl, 100)
    assert len(cfgs) == 20
    for k in space:
        assert sorted(int(c[k] * 20) for c in cfgs) == list(range(20))
    assert s.suggest("again") == Searcher.FINISHED


def test_lhs_needs_a_budget():
    with pytest.raises(ValueError, match="budget: LatinHypercubeSearch needs"):
        LatinHypercubeSearch(UNIT2, budget=None)


def test_rsa_keeps_its_minimum_distance_and_never_stalls():
    s = RSASearch(UNIT2, "loss", "min", seed=2, budget=30)
    pts = np.array([[c["x"], c["y"]] for c in drive_fn(s, bowl, 30)])
    first_radius = s.radius
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)) + np.eye(len(pts)) * 9
    assert d.min() >= first_radius * (1 - 1e-9)
    # Far past its budget the radius shrinks instead of rejecting forever.
    more = drive_fn(s, bowl, 400, start=30)
    assert len(more) == 400 and s.radius < first_radius


def test_rsa_spreads_better_than_random():
    s = RSASearch(UNIT2, "loss", "min", seed=0, budget=40)
    pts = np.array([[c["x"], c["y"]] for c in drive_fn(s, bowl, 40)])
    rnd = np.random.default_rng(0).random((40, 2))

    def min_dist(p):
        d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1)) + np.eye(len(p)) * 9
        return d.min()

    assert min_dist(pts) > 3 * min_dist(rnd)


@pytest.mark.parametrize("cls, kw", [(PSOSearch, {}), (ApproxGradientSearch, {"levels": 11})])
def test_converges_on_a_smooth_bowl_far_faster_than_random(cls, kw):
    space = {f"x{i}": {"type": "float", "low": -2.0, "high": 2.0} for i in range(4)}
    ours = [best_after(cls(space, "loss", "min", seed=s, **kw), bowl, 120) for s in range(5)]
    rand = [random_best(bowl, space, 120, s) for s in range(5)]
    assert np.median(ours) < np.median(rand) / 5, (ours, rand)


def test_pso_finishes_when_the_swarm_stops():
    s = PSOSearch(UNIT2, "loss", "min", seed=0, swarm_size=4, epsilon=0.01, restart=False)
    n = len(drive_fn(s, bowl, 5000))
    assert n < 5000 and s.converged and s.suggest("x") == Searcher.FINISHED


def test_pso_starts_again_when_the_swarm_stops():
    s = PSOSearch(UNIT2, "loss", "min", seed=0, swarm_size=4, epsilon=0.01)
    xs = drive_fn(s, bowl, 400)
    assert len(xs) == 400 and s.restarts >= 1 and s.reseeded == 0


def test_pso_is_asynchronous():
    s = PSOSearch(UNIT2, "loss", "min", seed=0, swarm_size=3)
    a, b, c = (s.suggest(t) for t in "abc")
    assert s.suggest("d") is None  # every particle is out being evaluated
    s.on_trial_complete("b", {"loss": bowl(b)})
    moved = s.suggest("e")  # particle b moved at once, without waiting for a and c
    assert isinstance(moved, dict) and moved != b


def test_approx_gradient_never_repeats_and_finishes_on_the_grid():
    space = {
        "lr": {
            "type": "float",
            "low": 1e-4,
            "high": 1e-1,
            "log": True,
            "grid": [1e-4, 3e-4, 1e-3, 1e-2, 1e-1],
        },
        "units": {"type": "int", "low": 8, "high": 64, "grid": [8, 16, 32, 64]},
        "act": {"type": "categorical", "choices": ["relu", "tanh"]},
    }

    def f(c):
        return (math.log10(c["lr"]) + 3) ** 2 + abs(c["units"] - 32) / 8 + (c["act"] == "tanh")

    s = ApproxGradientSearch(space, "loss", "min", seed=0)
    cfgs = drive_fn(s, f, 1000)
    keys = [(c["lr"], c["units"], c["act"]) for c in cfgs]
    assert len(keys) == len(set(keys)) == 5 * 4 * 2  # whole grid, no point twice
    assert {k[0] for k in keys} == {1e-4, 3e-4, 1e-3, 1e-2, 1e-1}  # exact grid values
    assert s.suggest("z") == Searcher.FINISHED
    assert min(s.local_optima, key=lambda o: o[1])[0] == {"lr": 1e-3, "units": 32, "act": "relu"}


def test_approx_gradient_evaluates_a_neighbourhood_concurrently():
    space = {f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(3)}
    s = ApproxGradientSearch(
        space, "loss", "min", seed=1, levels=5, walkers=1, design=0, fill="line"
    )
    out = [s.suggest(f"n{i}") for i in range(8)]
    # The start point and its axis neighbours (up to 2d = 6) go out together; one walk waits.
    assert sum(isinstance(c, dict) for c in out) >= 4 and out[-1] is None


def drive_fn(s, f, n, start=0):
    out = []
    for i in range(start, start + n):
        cfg = s.suggest(str(i))
        if cfg == Searcher.FINISHED:
            break
        assert cfg is not None
        out.append(cfg)
        s.on_trial_complete(str(i), {"loss": f(cfg)})
    return out


@pytest.mark.parametrize("name", CONTRACT)
def test_points_to_evaluate_come_first_and_inform_the_search(name):
    point = {
        "lr": 1e-3,
        "momentum": 0.5,
        "units": 16,
        "layers": 2,
        "act": ACT,
        "opt": {"inner": -1.0},
    }
    s = make(name, seed=6, points_to_evaluate=[point])
    first = s.suggest("first")
    assert first["lr"] == 1e-3 and first["units"] == 16 and first["act"] is ACT
    assert first["opt"] == {"inner": -1.0, "const": "kept"} and first["fixed"] == 7
    s.on_trial_complete("first", {"loss": objective(first)})
    _, losses = s.observations
    assert losses.tolist() == [objective(first)]
    assert drive(s, 5, start=10)


def test_model_based_searchers_are_under_contract():
    assert {"bohb", "bayesopt", "tpe"} <= set(CONTRACT)


def test_bohb_leaves_the_global_numpy_rng_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    drive(make("bohb", seed=0), 30)  # past min_points_in_model: the KDE samples too
    assert (np.random.get_state()[1] == before).all()


@pytest.mark.parametrize("name", ["bayesopt", "tpe"])
def test_model_based_search_beats_random_on_a_smooth_bowl(name):
    space = {f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(3)}

    def tuner_style(seed):  # metric and mode arrive later, through set_search_properties
        s = create_searcher(name, space=space, seed=seed)
        assert s.set_search_properties("loss", "min", {}) is False
        return s

    ours = [best_after(tuner_style(s), bowl, 30) for s in range(3)]
    rand = [random_best(bowl, space, 30, seed=s) for s in range(3)]
    assert np.median(ours) < np.median(rand) / 3


def test_bohb_takes_hyperband_pauses_with_or_without_a_limiter():
    """HyperBandForBOHB calls on_pause/on_unpause of the Tuner's searcher: the limiter, which
    passes them on, or BOHBSearch itself (Ray's Searcher has neither)."""
    for s in (make("bohb", seed=0, space=UNIT2), ConcurrencyLimiter(make("bohb"), 2)):
        cfg = s.suggest("a")
        s.on_trial_result("a", {"loss": 0.5, "training_iteration": 1})
        s.on_pause("a")
        s.on_unpause("a")
        s.on_trial_complete("a", {"loss": 0.4, "training_iteration": 3})
        assert isinstance(cfg, dict) and isinstance(s.suggest("b"), dict)


def test_bohb_learns_from_hyperband_milestones_and_final_results():
    s = make("bohb", seed=0, space=UNIT2)
    cfg = s.suggest("a")
    s.on_trial_result("a", {"loss": 0.5, "training_iteration": 1, "hyperband_info": {"budget": 1}})
    s.on_trial_complete("a", {"loss": 0.4, "training_iteration": 3})
    cfg2 = s.suggest("b")  # no HyperBand: the final result is learned at its epoch
    s.on_trial_complete("b", {"loss": 0.1, "training_iteration": 3})
    assert isinstance(cfg, dict) and isinstance(cfg2, dict)
    budgets = sorted(s.model.configs)
    assert budgets == [1, 3] and len(s.model.configs[3]) == 1
