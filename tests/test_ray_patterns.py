"""What Ray Tune's own generic searcher tests (test_searchers.py, test_searcher_utils.py,
test_sample.py of Ray 2.60) ask of a search algorithm, asked of every searcher of ours: Tune
domains from the Tuner's param_space (quantized ones too), half-open ranges, Ray's
save/restore-into-a-fresh-instance pattern, Repeater, ConcurrencyLimiter (in batches, with
set_max_concurrency, restored from a limiter's state), invalid values, constants that must
survive, failed and pruned earlier points (AddEvaluatedPointTest), and parameter names holding
'/' or '.'. Written for this project; the patterns are Ray's."""

import math
import os

import numpy as np
import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Repeater, Searcher

from raytune_hpo import testing
from raytune_hpo.searchers import SEARCHERS, create_searcher, owns_space

NAMES = [n for n in SEARCHERS if isinstance(create_searcher(n, budget=40), Searcher)]
DOMAINS = {
    "u": tune.uniform(-5, -1),
    "lu": tune.loguniform(1e-4, 1e-1),
    "qu": tune.quniform(-2.0, 2.0, 0.5),
    "qlu": tune.qloguniform(1e-4, 1e-1, 5e-5),
    "ri": tune.randint(-9, 15),
    "qri": tune.qrandint(-21, 12, 3),
    "c": tune.choice(["a", "b", "c"]),
    "list": [1, 2, 3],
    "num": 4,
}


def fresh(name, **kw):
    """A searcher as a Tuner builds it: no space, metric or mode of its own."""
    return create_searcher(name, seed=kw.pop("seed", 0), budget=40, **kw)


def loss(cfg):
    return (cfg["u"] + 3) ** 2 + math.log10(cfg["lu"]) ** 2 + abs(cfg["qu"]) + cfg["ri"] ** 2 / 50


def drive(s, n, start=0, complete=True, prefix="t"):
    return testing.drive(s, n, start, complete, loss, metric="metric", prefix=prefix)


def check(cfg):
    assert -5 <= cfg["u"] < -1, cfg["u"]  # Ray samples [low, high)
    assert 1e-4 <= cfg["lu"] < 1e-1
    assert -2.0 <= cfg["qu"] <= 2.0 and cfg["qu"] / 0.5 == round(cfg["qu"] / 0.5)
    assert 1e-4 - 1e-12 <= cfg["qlu"] <= 1e-1 + 1e-12
    assert abs(cfg["qlu"] / 5e-5 - round(cfg["qlu"] / 5e-5)) < 1e-6
    assert isinstance(cfg["ri"], int) and -9 <= cfg["ri"] < 15
    assert isinstance(cfg["qri"], int) and -21 <= cfg["qri"] <= 12 and cfg["qri"] % 3 == 0
    assert cfg["c"] in ("a", "b", "c")
    assert cfg["list"] == [1, 2, 3] and cfg["num"] == 4  # constants survive


@pytest.mark.parametrize("name", NAMES)
def test_tune_domains_from_param_space_quantized_and_half_open(name):
    s = fresh(name)
    assert s.set_search_properties("metric", "min", DOMAINS)
    cfgs = drive(s, 24)  # bayesopt: 14 suggestions from its GP after 10 initial points
    assert len(cfgs) >= 20
    for cfg in cfgs:
        check(cfg)


@pytest.mark.parametrize("name", NAMES)
def test_save_then_restore_into_a_fresh_instance(name, tmp_path):
    """Ray's SaveRestoreCheckpointTest: the restored searcher needs no set_search_properties,
    keeps the suggested-but-unfinished trial, and goes on exactly like the saved one."""
    path = os.path.join(tmp_path, "checkpoint.pkl")
    s = fresh(name)
    s.set_search_properties("metric", "max", DOMAINS)
    first = [s.suggest(t) for t in ("1", "2", "not_completed")]
    assert all(isinstance(c, dict) for c in first[:2]), first
    s.on_trial_result("1", {"training_iteration": 1, "metric": 1.0})
    s.on_trial_complete("1", {"training_iteration": 1, "metric": 1.0})
    s.save(path)
    restored = fresh(name, seed=123)  # nothing but the file
    restored.restore(path)
    for searcher in (s, restored):
        searcher.on_trial_complete("2", {"training_iteration": 1, "metric": 2.0})
    assert drive(restored, 6, prefix="r") == drive(s, 6, prefix="r")


@pytest.mark.parametrize("name", NAMES)
def test_under_repeater(name):
    s = fresh(name)
    rep = Repeater(s, repeat=3, set_index=True)
    assert rep.set_search_properties("metric", "min", DOMAINS)
    seen = []
    for i in range(18):
        cfg = rep.suggest(f"t{i}")
        if cfg is None or cfg == Searcher.FINISHED:
            break
        seen.append(cfg)
        rep.on_trial_complete(f"t{i}", {"metric": loss(cfg)})
    assert len(seen) >= 9
    for i in range(0, len(seen) - len(seen) % 3, 3):  # each configuration three times
        group = [{k: v for k, v in c.items() if k != "__trial_index__"} for c in seen[i : i + 3]]
        assert group[0] == group[1] == group[2]
        check(group[0])


@pytest.mark.parametrize("name", NAMES)
def test_under_concurrency_limiter(name):
    s = ConcurrencyLimiter(fresh(name), max_concurrent=2)
    assert s.set_search_properties("metric", "min", DOMAINS)
    live = [s.suggest(f"t{i}") for i in range(4)]
    assert [c is not None for c in live] == [True, True, False, False], live
    s.on_trial_complete("t0", {"metric": loss(live[0])})
    assert s.suggest("t4") is not None and s.suggest("t5") is None


@pytest.mark.parametrize("name", NAMES)
def test_invalid_values_and_mode_max(name):
    """Ray's InvalidValuesTest: inf, -inf and NaN results never crash, are never the best."""
    s = fresh(name)
    s.set_search_properties("metric", "max", DOMAINS)
    for i, value in enumerate([math.inf, -math.inf, math.nan, 0.5, math.nan, 0.2] * 3):
        cfg = s.suggest(f"t{i}")
        if not isinstance(cfg, dict):
            break
        check(cfg)
        s.on_trial_complete(f"t{i}", {"metric": value})
    if hasattr(s, "observations"):
        _, losses = s.observations
        finite = losses[np.isfinite(losses)]
        assert len(finite) and (finite == -0.5).any()  # 0.5 (max) is the best finite loss
        assert np.isinf(losses[~np.isfinite(losses)]).all() and (losses == math.inf).sum() >= 3


# ----------------------------------------------------------------------------- issue 26
OPTUNA_NAMES = ["tpe", "bayesopt"]  # the searchers that keep an Optuna study
OURS = [n for n in NAMES if owns_space(n)]  # every searcher that takes our SearchSpace


def study_trials(s):
    return s.study.trials


@pytest.mark.parametrize("name", OPTUNA_NAMES)
def test_a_failed_earlier_point_is_a_failed_trial_and_a_pruned_one_pruned(name):
    """Ray's AddEvaluatedPointTest: error=True is FAIL, pruned=True is PRUNED with its
    intermediate values; a crash is never learnt as a success."""
    import optuna

    state = optuna.trial.TrialState
    s = create_searcher(name, space={"report": {"type": "float", "low": 0, "high": 5}}, seed=0)
    s.set_search_properties("metric", "max", {})
    point = {"report": 1.0}
    s.add_evaluated_point(point, 1.0, intermediate_values=[0.8, 0.9])
    s.add_evaluated_point(point, 1.0, intermediate_values=[0.8, 0.9], error=True)
    s.add_evaluated_point(point, 2.0, intermediate_values=[0.8, 0.9], pruned=True)
    s.add_evaluated_point(point, math.nan)  # no error: the worst finite value seen
    trials = study_trials(s)
    assert [t.state for t in trials] == [state.COMPLETE, state.FAIL, state.PRUNED, state.COMPLETE]
    assert trials[1].value is None
    assert trials[2].intermediate_values == {0: 0.8, 1: 0.9} and trials[2].value == 2.0
    assert trials[3].value == 1.0  # mode max: the worst finite value so far
    assert isinstance(s.suggest("1"), dict)


@pytest.mark.parametrize("name", OPTUNA_NAMES)
def test_a_trial_that_errored_is_a_failed_trial_junk_results_the_worst(name):
    import optuna

    state = optuna.trial.TrialState
    s = fresh(name)
    s.set_search_properties("metric", "min", DOMAINS)
    results = [({"metric": 2.0}, False), (None, True), ({"metric": 1.0}, True)]
    results += [({"metric": math.nan}, False), ({"metric": "junk"}, False)]
    for i, (result, error) in enumerate(results):
        s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", result, error=error)
    trials = study_trials(s)
    assert [t.state for t in trials] == [state.COMPLETE, state.FAIL, state.FAIL] + [
        state.COMPLETE
    ] * 2
    assert [t.value for t in trials] == [2.0, None, None, 2.0, 2.0]


SLASHED = {
    "opt/lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "a": {"b": {"type": "int", "low": 1, "high": 9}},
    "c/d": {"e": {"type": "categorical", "choices": ["x", "y"]}},
}
COLLIDING = {
    "a.b": {"type": "float", "low": 0.0, "high": 1.0},
    "a": {"b": {"type": "float", "low": 10.0, "high": 11.0}},
    "p%2Eq": {"type": "float", "low": 20.0, "high": 21.0},
    "p.q": {"type": "float", "low": 30.0, "high": 31.0},
}


def varied(cfgs, get) -> int:
    return len({get(c) for c in cfgs})


@pytest.mark.parametrize("given", ["space", "param_space"])
@pytest.mark.parametrize("name", OURS)
def test_names_with_a_slash_are_searched(name, given):
    domains = {
        "opt/lr": tune.loguniform(1e-4, 1e-1),
        "a": {"b": tune.randint(1, 10)},
        "c/d": {"e": tune.choice(["x", "y"])},
    }
    if given == "space":
        s = create_searcher(name, space=SLASHED, seed=0, budget=40)
        s.set_search_properties("metric", "min", {})
    else:
        s = fresh(name)
        assert s.set_search_properties("metric", "min", domains)
    cfgs = testing.drive(s, 20, f=lambda c: c["opt/lr"] + c["a"]["b"], metric="metric")
    assert len(cfgs) >= 10
    for c in cfgs:
        assert 1e-4 <= c["opt/lr"] <= 1e-1 and 1 <= c["a"]["b"] <= 9, c
        assert c["c/d"]["e"] in ("x", "y") and set(c) == {"opt/lr", "a", "c/d"}, c
    assert varied(cfgs, lambda c: c["opt/lr"]) > 5 and varied(cfgs, lambda c: c["a"]["b"]) > 1


@pytest.mark.parametrize("name", OURS)
def test_a_dotted_name_and_a_nested_path_are_two_parameters(name, tmp_path):
    s = create_searcher(name, space=COLLIDING, seed=0, budget=40)
    s.set_search_properties("metric", "min", {})

    def f(c):
        return c["a.b"] + c["a"]["b"] + c["p%2Eq"] + c["p.q"]

    cfgs = testing.drive(s, 12, f=f, metric="metric")
    s.save(str(tmp_path / "state.pkl"))
    cfgs += testing.drive(s, 8, start=12, f=f, metric="metric")
    assert len(cfgs) >= 10
    for c in cfgs:
        assert 0.0 <= c["a.b"] <= 1.0 and 10.0 <= c["a"]["b"] <= 11.0, c
        assert 20.0 <= c["p%2Eq"] <= 21.0 and 30.0 <= c["p.q"] <= 31.0, c
    for get in (lambda c: c["a.b"], lambda c: c["a"]["b"], lambda c: c["p.q"]):
        assert varied(cfgs, get) >= 5  # each one is searched, none stuck at one value


LIMITED = {"x": {"type": "float", "low": 0.0, "high": 1.0}}


def limited(name, **kw):
    s = create_searcher(name, space=LIMITED, metric="metric", mode="min", seed=0, budget=40)
    return ConcurrencyLimiter(s, **kw)


@pytest.mark.parametrize("name", OURS)
def test_limiter_in_batches_holds_until_the_batch_is_done(name):
    """Ray's test_batch_limiter: with batch=True nothing new starts before the whole batch
    has finished."""
    lim = limited(name, max_concurrent=2, batch=True)
    assert lim.suggest("t1") is not None and lim.suggest("t2") is not None
    assert lim.suggest("t3") is None
    lim.on_trial_complete("t1", {"metric": 3.0})
    assert lim.suggest("t3") is None  # t2 of the batch still runs
    lim.on_trial_complete("t2", {"metric": 3.0})
    assert lim.suggest("t3") is not None


@pytest.mark.parametrize("name", OURS)
def test_limiter_state_restored_into_another_limiter_holds(name):
    """Ray's test_set_get_limiter: a limiter's saved state keeps its limit and live trials."""
    lim = limited(name, max_concurrent=2)
    assert lim.suggest("t1") is not None and lim.suggest("t2") is not None
    assert lim.suggest("t3") is None
    state = lim.get_state()
    again = ConcurrencyLimiter(lim.searcher, max_concurrent=3)
    again.set_state(state)
    assert again.suggest("t4") is None and again.suggest("t5") is None
    again.on_trial_complete("t1", {"metric": 3.0})
    again.on_trial_complete("t2", {"metric": 3.0})
    assert again.suggest("t3") is not None


@pytest.mark.parametrize("name", OURS)
def test_limiter_set_max_concurrency_holds(name):
    lim = limited(name, max_concurrent=4)
    lim.set_max_concurrency(2)
    assert [lim.suggest(f"t{i}") is not None for i in range(3)] == [True, True, False]


def test_library_names_are_unique_and_round_trip():
    from raytune_hpo.sweep.space import SearchSpace

    space = SearchSpace.from_dict(
        {**COLLIDING, "x%": {"%2E": {"type": "int", "low": 0, "high": 3}}}
    )
    names = space.library_names
    assert len(set(names)) == len(names) == 5
    assert names[:2] == ["a%2Eb", "a.b"]  # the dotted name is escaped, the path is not
    assert set(space.to_optuna()) == set(names)
    config = space.from_unit([0.5] * 5)
    assert space.from_library(space.to_library(config)) == config
    plain = SearchSpace.from_dict(SLASHED)  # ordinary names stay what they were
    assert plain.library_names == plain.names == ["opt/lr", "a.b", "c/d.e"]
