import math

import numpy as np
import pytest
from ray import tune

from raytune_hpo.sweep.space import CategoricalParam, FloatParam, IntParam, SearchSpace

YAML_SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
    "dropout": {"type": "float", "low": 0.1, "high": 0.5, "grid": [0.3, 0.4, 0.5]},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
    "epochs": {"type": "int", "low": 15, "high": 30},
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
    "model_opts": {"c1": {"type": "int", "low": 2, "high": 64, "log": True}, "act": "relu"},
    "dataset": "digits",
}


def test_from_yaml_form_types_and_nesting():
    s = SearchSpace.from_dict(YAML_SPACE)
    assert s.names == ["lr", "dropout", "batch_size", "epochs", "optimizer", "model_opts.c1"]
    assert s.params[("lr",)] == FloatParam(1e-5, 0.1, True)
    assert s.params[("epochs",)] == IntParam(15, 30)
    assert s.constants == {("model_opts", "act"): "relu", ("dataset",): "digits"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unit_round_trip_is_in_bounds_and_typed(seed):
    s = SearchSpace.from_dict(YAML_SPACE)
    rng = np.random.default_rng(seed)
    for u in rng.random((200, s.dims)):
        cfg = s.from_unit(u)
        assert 1e-5 <= cfg["lr"] <= 0.1
        assert isinstance(cfg["epochs"], int) and 15 <= cfg["epochs"] <= 30
        assert isinstance(cfg["model_opts"]["c1"], int) and 2 <= cfg["model_opts"]["c1"] <= 64
        assert cfg["batch_size"] in (16, 32, 64) and cfg["optimizer"] in ("adam", "sgd", "rmsprop")
        assert cfg["model_opts"]["act"] == "relu" and cfg["dataset"] == "digits"
        # Decoding the encoded config gives the same config back.
        back = s.from_unit(s.to_unit(cfg))
        assert s.flat_config(back) == pytest.approx(s.flat_config(cfg))
        assert back["model_opts"]["act"] == "relu"


def test_unit_edges_hit_the_bounds():
    s = SearchSpace.from_dict(YAML_SPACE)
    lo, hi = s.from_unit(np.zeros(s.dims)), s.from_unit(np.ones(s.dims))
    assert lo["lr"] == pytest.approx(1e-5) and hi["lr"] == pytest.approx(0.1)
    assert (lo["epochs"], hi["epochs"]) == (15, 30)
    assert (lo["batch_size"], hi["batch_size"]) == (16, 64)


def test_every_integer_is_reachable_with_equal_cells():
    p = IntParam(1, 4)
    hits = [p.from_unit(u) for u in np.linspace(0, 1, 4001)]
    counts = np.bincount(hits)[1:]
    assert list(np.nonzero(counts)[0] + 1) == [1, 2, 3, 4]
    assert counts.min() > 0.9 * counts.max()


def test_log_range_is_log_uniform():
    p = FloatParam(1e-5, 1e-1, log=True)
    xs = np.array([p.from_unit(u) for u in np.random.default_rng(0).random(20000)])
    decades = np.histogram(np.log10(xs), bins=[-5, -4, -3, -2, -1])[0]
    # Reciprocal distribution: each decade holds about a quarter of the samples.
    assert np.allclose(decades / len(xs), 0.25, atol=0.02)


def test_to_tune_domains_sample_inside_bounds():
    s = SearchSpace.from_dict(YAML_SPACE)
    ts = s.to_tune()
    assert isinstance(ts["lr"], tune.search.sample.Float)
    assert ts["dataset"] == "digits" and ts["model_opts"]["act"] == "relu"
    ep = ts["epochs"]
    draws = ep.sample(size=2000, random_state=np.random.default_rng(0))
    assert min(draws) == 15 and max(draws) == 30  # Tune's exclusive upper bound handled
    lr = np.array(ts["lr"].sample(size=2000, random_state=np.random.default_rng(0)))
    # Log-uniform over 1e-5..0.1 has its median at 1e-3 (uniform would put it near 0.05).
    assert lr.min() >= 1e-5 and lr.max() <= 0.1 and 5e-4 < np.median(lr) < 2e-3


def test_from_tune_domains_round_trip():
    s = SearchSpace.from_dict(
        {
            "lr": tune.loguniform(1e-4, 1e-1),
            "units": tune.randint(8, 65),
            "act": tune.choice(["relu", "tanh"]),
            "wd": tune.uniform(0.0, 0.1),
            "fixed": 3,
            "g": tune.grid_search([1, 2]),
        }
    )
    assert s.params[("lr",)] == FloatParam(1e-4, 1e-1, True, open_high=True)  # [low, high)
    assert s.params[("units",)] == IntParam(8, 64)
    assert s.params[("act",)] == CategoricalParam(("relu", "tanh"))
    assert s.params[("g",)] == CategoricalParam((1, 2))
    assert s.constants == {("fixed",): 3}


def test_grid_is_cartesian_product_of_grid_values():
    s = SearchSpace.from_dict(
        {
            "lr": {
                "type": "float",
                "low": 1e-4,
                "high": 1e-2,
                "log": True,
                "grid": [1e-2, 1e-3, 1e-4],
            },
            "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
            "layers": {"type": "int", "low": 1, "high": 2},
            "epochs": 20,
        }
    )
    g = s.grid()
    assert len(g) == 3 * 3 * 2
    assert all(c["epochs"] == 20 for c in g)
    assert {(c["lr"], c["batch_size"], c["layers"]) for c in g} == {
        (a, b, c) for a in (1e-2, 1e-3, 1e-4) for b in (16, 32, 64) for c in (1, 2)
    }
    grid_tune = s.to_tune(grid=True)
    assert grid_tune["lr"] == {"grid_search": [1e-2, 1e-3, 1e-4]}


def test_grid_needs_values_for_floats():
    s = SearchSpace.from_dict({"lr": {"type": "float", "low": 0.1, "high": 1.0}})
    with pytest.raises(ValueError, match=r"space\.lr: grid search needs explicit `grid`"):
        s.grid()


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"type": "float", "low": 1.0, "high": 0.5}, r"space\.x: empty or inverted range"),
        ({"type": "float", "low": 0.5, "high": 0.5}, r"space\.x: empty or inverted range"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, r"space\.x\.low: log: true"),
        ({"type": "categorical", "choices": []}, r"space\.x\.choices: must be a non-empty list"),
        ({"type": "floaty", "low": 0, "high": 1}, r"space\.x\.type: .*allowed: float, int"),
        ({"type": "int", "low": 0.5, "high": 3}, r"space\.x: int bounds must be whole"),
        ({"type": "float", "low": 0, "high": 1, "grid": [2.0]}, r"space\.x\.grid: 2.0 lies"),
        ({"type": "float", "low": 0, "high": 1, "step": 2}, r"space\.x: unknown key"),
        ({"type": "float", "low": "a", "high": 1}, r"space\.x\.low: must be a number"),
        ({"type": "float", "high": 1}, r"space\.x: a float parameter needs `low` and `high`"),
    ],
)
def test_bad_parameters_name_the_field(entry, message):
    with pytest.raises(ValueError, match=message):
        SearchSpace.from_dict({"x": entry})


def test_to_configspace_matches_types():
    cs_mod = pytest.importorskip("ConfigSpace")
    cs = SearchSpace.from_dict(YAML_SPACE).to_configspace(seed=1)
    hp = (
        {h.name: h for h in cs.values()}
        if hasattr(cs, "values")
        else {h.name: h for h in cs.get_hyperparameters()}
    )
    assert isinstance(hp["lr"], cs_mod.UniformFloatHyperparameter) and hp["lr"].log
    assert isinstance(hp["model_opts.c1"], cs_mod.UniformIntegerHyperparameter)
    # Libraries see a categorical as its choice's index, so any object can be a choice.
    assert list(hp["optimizer"].choices) == [0, 1, 2]
    space = SearchSpace.from_dict(YAML_SPACE)
    config = space.from_unit([0.5] * space.dims)
    assert space.from_library(space.to_library(config)) == config
    assert not math.isnan(hp["lr"].lower)


def test_half_open_tune_ranges_never_return_their_upper_bound():
    s = SearchSpace.from_dict({"x": tune.uniform(-5, -1), "y": tune.loguniform(1e-3, 1.0)})
    top = s.from_unit([1.0, 1.0])
    assert -5 <= top["x"] < -1 and 1e-3 <= top["y"] < 1.0
    assert s.from_library({"x": -1.0, "y": 1.0})["x"] < -1  # a library's upper edge too
    # The YAML form is closed: its high is reachable.
    closed = SearchSpace.from_dict({"x": {"type": "float", "low": -5, "high": -1}})
    assert closed.from_unit([1.0])["x"] == -1


@pytest.mark.parametrize(
    "domain, q, low, high",
    [
        (tune.quniform(-2.0, 2.0, 0.2), 0.2, -2.0, 2.0),
        (tune.qloguniform(1e-4, 1e-1, 5e-5), 5e-5, 1e-4, 1e-1),
        (tune.qrandint(-21, 12, 3), 3, -21, 12),
        (tune.qlograndint(2, 64, 2), 2, 2, 64),
    ],
)
def test_quantized_tune_domains_give_multiples_of_q_inside_the_bounds(domain, q, low, high):
    s = SearchSpace.from_dict({"x": domain})
    rng = np.random.default_rng(0)
    values = [s.from_unit([u])["x"] for u in [0.0, 1.0, *rng.random(200)]]
    for v in values:
        assert low - 1e-12 <= v <= high + 1e-12
        assert abs(v / q - round(v / q)) < 1e-6, v
    assert len(set(values)) > 3
    # It converts back to the same kind of Tune domain, and to a stepped Optuna distribution.
    again = SearchSpace.from_dict(s.to_tune())
    assert again.params == s.params
    dist = s.to_optuna()["x"]
    assert dist.low >= low - 1e-12 and dist.high <= high + 1e-12


def test_yaml_q_and_its_errors():
    s = SearchSpace.from_dict({"bs": {"type": "int", "low": 16, "high": 256, "q": 16}})
    assert {s.from_unit([u])["bs"] % 16 for u in np.linspace(0, 1, 50)} == {0}
    for entry, message in [
        ({"type": "int", "low": 1, "high": 9, "q": 0.5}, r"space\.x\.q: must be a positive int"),
        ({"type": "float", "low": 0.1, "high": 0.2, "q": 1.0}, r"no multiple of 1\.0 lies in"),
        ({"type": "float", "low": 0, "high": 1, "q": -1}, r"space\.x\.q: must be a positive"),
    ]:
        with pytest.raises(ValueError, match=message):
            SearchSpace.from_dict({"x": entry})


@pytest.mark.parametrize(
    "entry",
    [
        {"type": "float", "low": 0.0, "high": 0.1, "q": 0.03},
        {"type": "float", "low": 0.001, "high": 0.1, "q": 0.02, "log": True},
        {"type": "int", "low": 1, "high": 10, "q": 3},
    ],
)
def test_bounds_that_are_not_multiples_of_q_reach_ray_as_the_multiples_inside(entry):
    """tune.quniform refuses bounds that are not multiples of q; a sweep file need not care."""
    domain = SearchSpace.from_dict({"x": entry}).to_tune()["x"]
    rng = np.random.default_rng(1)
    values = {domain.sample(random_state=rng) for _ in range(300)}
    q = entry["q"]
    for v in values:
        assert entry["low"] - 1e-12 <= v <= entry["high"] + 1e-12, v
        assert abs(v / q - round(v / q)) < 1e-6, v
    assert len(values) >= 3


def test_unbounded_tune_domains_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"space\.x: only uniform and log-uniform .*bounds"):
        SearchSpace.from_dict({"x": tune.randn(0, 1)})
