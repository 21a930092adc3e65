"""Search-quality properties of our own algorithms: the approximate gradient's multi-resolution
walks, hypertiling's space filling, PSO's paper settings, and bayesopt against Optuna's
GPSampler used directly. (Regret figures are benchmarks: scripts/bench_searchers.py.)"""

import math

import numpy as np
import pytest
from ray.tune.search import ConcurrencyLimiter, Searcher
from scipy.spatial.distance import pdist
from scipy.stats import qmc

from raytune_hpo.searchers import (
    ApproxGradientSearch,
    HypertilingSearch,
    PSOSearch,
    create_searcher,
)
from raytune_hpo.searchers._hypertiling import Window, _vertices, frame, tiling_points

UNIT2 = {f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(2)}


def cube(d):
    return {f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(d)}


def bowl(c):
    return sum((c[k] - 0.3) ** 2 for k in c)


def drive(s, f, n):
    """Sequential: suggest, evaluate, complete; stops at FINISHED. Returns the configs."""
    out = []
    for i in range(n):
        cfg = s.suggest(f"t{i}")
        if cfg == Searcher.FINISHED:
            break
        assert isinstance(cfg, dict), (i, cfg)
        out.append(cfg)
        s.on_trial_complete(f"t{i}", {"loss": f(cfg)})
    return out


def keys(cfgs):
    return [tuple(c[k] for k in sorted(c)) for c in cfgs]


# ----------------------------------------------------------------------------- approx gradient
def test_approx_gradient_uses_the_whole_budget_without_repeating():
    s = ApproxGradientSearch(UNIT2, "loss", "min", seed=0, levels=5)
    cfgs = drive(s, bowl, 60)
    assert len(cfgs) == 60  # the 5 x 5 grid has 25 points: the rest are refinements
    assert len(set(keys(cfgs))) == 60
    # Refinement converges far below the coarse spacing (0.25) around the optimum (0.3, 0.3).
    assert min(bowl(c) for c in cfgs) < (0.25 / 16) ** 2


def test_approx_gradient_never_repeats_a_configuration_over_a_long_run():
    space = {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "units": {"type": "int", "low": 4, "high": 12},
        "act": {"type": "categorical", "choices": ["relu", "tanh"]},
    }

    def f(c):
        return (math.log10(c["lr"]) + 2.2) ** 2 + (c["units"] - 7) ** 2 + (c["act"] == "tanh")

    s = ApproxGradientSearch(space, "loss", "min", seed=3)
    cfgs = drive(s, f, 400)
    assert len(cfgs) == 400
    assert len(set(keys(cfgs))) == 400  # integers that round to one value count once


def test_approx_gradient_differs_across_seeds():
    runs = [
        keys(drive(ApproxGradientSearch(UNIT2, "loss", "min", seed=k), bowl, 60)) for k in range(4)
    ]
    assert len({tuple(r[:5]) for r in runs}) == 4  # different start points
    assert len({tuple(r) for r in runs}) == 4


def test_approx_gradient_keeps_every_slot_busy():
    s = ApproxGradientSearch(cube(3), "loss", "min", seed=1)
    # Nothing completes: one walk's neighbourhood is 7 points, more walks start for the rest.
    out = [s.suggest(f"n{i}") for i in range(20)]
    assert all(isinstance(c, dict) for c in out)
    assert len(set(keys(out))) == 20

    # Asynchronous run under a ConcurrencyLimiter: 8 trials in flight, the oldest finishes.
    limited = ConcurrencyLimiter(ApproxGradientSearch(cube(3), "loss", "min", seed=2), 8)
    live, seen, busy = [], [], []
    for i in range(200):
        cfg = limited.suggest(f"c{i}")
        assert isinstance(cfg, dict), (i, cfg)  # never None: a slot is never left idle
        live.append((f"c{i}", cfg))
        seen.append(cfg)
        busy.append(len(live))
        if len(live) == 8:
            tid, done = live.pop(0)
            limited.on_trial_complete(tid, {"loss": bowl(done)})
    assert max(busy) == 8 and len(set(keys(seen))) == 200


def test_approx_gradient_finishes_only_when_nothing_is_left():
    # With one walk allowed it ends once that walk has converged at its finest spacing.
    s = ApproxGradientSearch(UNIT2, "loss", "min", seed=0, refine=2, max_restarts=0)
    n = len(drive(s, bowl, 500))
    assert 5 <= n < 500 and s.suggest("more") == Searcher.FINISHED
    assert len(s.local_optima) == 1
    # Two halvings of the 5-level grid leave 17 x 17 points: every one, then FINISHED.
    s = ApproxGradientSearch(UNIT2, "loss", "min", seed=0, refine=2)
    cfgs = drive(s, bowl, 500)
    assert len(set(keys(cfgs))) == len(cfgs) == 17 * 17
    assert s.suggest("more") == Searcher.FINISHED
    # A bowl has one optimum; later walks stop when they run into it instead of repeating it.
    assert s.local_optima == [({"x0": 0.3125, "x1": 0.3125}, pytest.approx(2 * 0.0125**2))]
    # With the default 8 halvings it keeps going.
    assert len(drive(ApproxGradientSearch(UNIT2, "loss", "min", seed=0), bowl, 500)) == 500


# ----------------------------------------------------------------------------- hypertiling
def min_distance(p):
    return pdist(p).min()


def test_penrose_vertices_from_the_pentagrid():
    e, f = frame(2)
    assert e.shape == (2, 5)  # five families of lines
    window = Window(f)
    rng = np.random.default_rng(0)
    gamma = rng.random(5)
    gamma -= gamma.mean()
    pos = _vertices(e, window, gamma, np.zeros(2), 12.0, rng, 500)
    # Density: the window's volume; a box of side 12 holds 144 x that, up to its boundary.
    assert abs(len(pos) / (144 * window.volume) - 1) < 0.1
    nearest = np.sort(np.linalg.norm(pos[:, None] - pos[None], axis=-1), axis=1)[:, 1]
    # A Penrose rhombus tiling: the nearest vertex is an edge away or across a thin rhombus
    # (short diagonal = edge / golden ratio), nothing else.
    edge = math.sqrt(2 / 5)
    assert set(np.round(nearest / edge, 6)) == {round(2 / (1 + math.sqrt(5)), 6), 1.0}


@pytest.mark.parametrize("d", [2, 3, 5])
def test_hypertiling_spreads_points_wider_than_random_and_lhs(d):
    # Measured (8 seeds, 64 points): the minimum distance is 1.6-7x random's and 1.6-4x
    # LHS's; the centred discrepancy is below random's but above LHS's (LHS balances every
    # one-dimensional projection exactly, a tiling does not).
    n = 64
    ours, rand, lhs, disc = [], [], [], {"ours": [], "random": [], "lhs": []}
    for seed in range(5):
        pts = np.array(
            [
                [c[f"x{i}"] for i in range(d)]
                for c in drive(
                    HypertilingSearch(cube(d), "loss", "min", seed=seed, budget=n), bowl, n
                )
            ]
        )
        r = np.random.default_rng(seed).random((n, d))
        h = qmc.LatinHypercube(d, seed=seed).random(n)
        ours.append(min_distance(pts))
        rand.append(min_distance(r))
        lhs.append(min_distance(h))
        disc["ours"].append(qmc.discrepancy(pts))
        disc["random"].append(qmc.discrepancy(r))
        disc["lhs"].append(qmc.discrepancy(h))
    assert np.mean(ours) > 1.3 * np.mean(rand)
    assert np.mean(ours) > 1.3 * np.mean(lhs)
    assert np.mean(disc["ours"]) < np.mean(disc["random"])


def test_hypertiling_prefixes_are_spread_out():
    u = tiling_points(2, 100, np.random.default_rng(0))
    rand = np.random.default_rng(0).random((100, 2))
    for k in (10, 25, 50):
        assert min_distance(u[:k]) > 2 * min_distance(rand[:k])


def test_hypertiling_budget_then_finished_and_small_state():
    s = HypertilingSearch(cube(4), "loss", "min", seed=1, budget=30)
    cfgs = drive(s, bowl, 100)
    assert len(cfgs) == 30 and len(set(keys(cfgs))) == 30
    assert s.suggest("more") == Searcher.FINISHED
    state = s.get_state()
    assert "_design" not in state["state"]  # the points are rebuilt from the seed and the count
    with pytest.raises(ValueError, match="budget: must be an integer >= 1"):
        HypertilingSearch(UNIT2, budget=0)
    with pytest.raises(ValueError, match="space: hypertiling supports up to 24 dimensions"):
        HypertilingSearch(cube(25))


# ----------------------------------------------------------------------------- PSO
PAPER = dict(
    w=0.5,
    phi_l=0.4,
    phi_g=0.0,
    attractor="current",
    per_dimension=False,
    init="random",
    init_speed=0.0,
    stall=0,
    restart=False,
    max_speed=math.inf,
)


def test_pso_paper_settings_pull_towards_the_best_current_position():
    s = PSOSearch(cube(3), "loss", "min", seed=0, swarm_size=3, **PAPER)
    a, b, c = (s.suggest(t) for t in "abc")
    # init="random": the positions are the seeded generator's first uniform draws.
    start = np.random.default_rng(0).random((3, 3))
    assert np.allclose([[p[f"x{i}"] for i in range(3)] for p in (a, b, c)], start)
    s.on_trial_complete("b", {"loss": 1.0})
    s.on_trial_complete("c", {"loss": 3.0})
    s.on_trial_complete("a", {"loss": 2.0})
    moved = [s.suggest(t) for t in ("b2", "c2", "a2")][2]
    xa, xb, xm = (np.array([p[f"x{i}"] for i in range(3)]) for p in (a, b, moved))
    # v = w * 0 + u_l (h~ - x): one scalar factor u_l in [0, phi_l] towards b, the best of the
    # swarm's current positions (not the particle's own best, which is where it stands).
    step, towards = xm - xa, xb - xa
    factor = step @ towards / (towards @ towards)
    assert 0 < factor <= PAPER["phi_l"]
    assert np.allclose(step, factor * towards)


def test_pso_standard_settings_differ_from_the_paper():
    s = PSOSearch(
        cube(3), "loss", "min", seed=0, swarm_size=3, **{**PAPER, "attractor": "personal"}
    )
    for t in "abc":
        s.suggest(t)
    for t, loss in (("b", 1.0), ("c", 3.0), ("a", 2.0)):
        s.on_trial_complete(t, {"loss": loss})
    # Each particle's own best is where it stands and phi_g = 0: nobody moves, the swarm has
    # stopped (with the paper's attractor, particle a moved towards b).
    assert s.converged and s.suggest("next") == Searcher.FINISHED


def test_pso_default_swarm_starts_on_a_latin_hypercube():
    s = PSOSearch(cube(2), "loss", "min", seed=4)
    pts = np.array([[c["x0"], c["x1"]] for c in (s.suggest(str(i)) for i in range(8))])
    for j in range(2):  # a Latin hypercube of 8 points: one in each eighth per axis
        assert sorted(np.floor(pts[:, j] * 8).astype(int)) == list(range(8))


def test_pso_rejects_unknown_choices():
    with pytest.raises(ValueError, match="topology: got 'star'; allowed: global, ring"):
        PSOSearch(UNIT2, topology="star")
    with pytest.raises(ValueError, match="restart: must be true or false, got 'maybe'"):
        PSOSearch(UNIT2, restart="maybe")  # a YAML string would otherwise read as true
    with pytest.raises(ValueError, match=r"mutation: must lie in \[0, 1\], got 2"):
        PSOSearch(UNIT2, mutation=2)


def test_pso_reseeds_stalled_particles():
    s = PSOSearch(UNIT2, "loss", "min", seed=0, swarm_size=4, stall=2)
    drive(s, lambda c: 1.0, 40)  # a flat function: nobody improves after the first value
    assert s.reseeded > 0


# ----------------------------------------------------------------------------- bayesopt
def test_bayesopt_suggests_what_optuna_gpsampler_suggests_directly():
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {f"x{i}": {"type": "float", "low": -2.0, "high": 3.0} for i in range(3)}

    def f(c):
        return sum((c[k] - 0.7) ** 2 for k in sorted(c))

    n = 13  # the 10 initial points and 3 model-based ones
    study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=5))
    direct = []
    for _ in range(n):
        t = study.ask()
        cfg = {k: t.suggest_float(k, -2.0, 3.0) for k in space}
        study.tell(t, f(cfg))
        direct.append(cfg)
    ours = drive(create_searcher("bayesopt", space=space, metric="loss", mode="min", seed=5), f, n)
    assert np.allclose(keys(ours), keys(direct))


def test_under_early_stopping_a_short_trial_is_no_better_than_those_that_went_further():
    from raytune_hpo.searchers import PSOSearch

    space = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
    seen = []

    class Watch(PSOSearch):
        def _observe(self, trial_id, u, loss):
            seen.append(loss)
            super()._observe(trial_id, u, loss)

    for early in (False, True):
        seen.clear()
        s = Watch(space, "loss", "min", seed=0, swarm_size=4)
        if early:
            s.set_early_stopping()
        cfgs = [s.suggest(f"t{i}") for i in range(3)]
        # Two trials ran the full 9 epochs (losses 0.30 and 0.40); ASHA stopped the third at
        # epoch 1, where its loss (0.10, measured early) looks best but compares nothing.
        s.on_trial_complete("t0", {"loss": 0.30, "training_iteration": 9})
        s.on_trial_complete("t1", {"loss": 0.40, "training_iteration": 9})
        s.on_trial_complete("t2", {"loss": 0.10, "training_iteration": 1})
        assert all(isinstance(c, dict) for c in cfgs)
        if early:
            assert seen == [0.30, 0.40, 0.40]  # no better than the worst that went further
            assert s._gbest_loss == 0.30  # the swarm follows a full-budget result
        else:
            assert seen == [0.30, 0.40, 0.10]


@pytest.mark.integration
def test_pso_under_asha_learns_only_comparable_results(ray_session, tmp_path):
    from ray import tune

    from raytune_hpo.plan.assemble import assemble
    from raytune_hpo.run.sweep import run_sweep
    from raytune_hpo.sweep.spec import SweepSpec

    def curve(config):
        for epoch in range(1, 10):  # good x learns slowly: early it looks worse than it is
            tune.report({"loss": (config["x"] - 0.7) ** 2 + 1.0 / epoch * (1 - config["x"])})

    spec = SweepSpec.from_dict(
        {
            "metric": "loss",
            "mode": "min",
            "num_samples": 8,
            "max_concurrent": 2,
            "searcher": {"name": "pso", "swarm_size": 4},
            "scheduler": {"name": "asha", "max_t": 9, "grace_period": 1, "reduction_factor": 3},
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "storage_path": str(tmp_path),
        }
    )
    plan = assemble(spec, trainable=curve)
    assert not plan.warnings
    result = run_sweep(spec, trainable=curve, plan=plan)
    assert len(result.table) == 8 and (result.table["status"] == "OK").all()
    assert result.table["epochs"].min() < 9  # ASHA did stop some trials early
