"""Conditional parameters (``when:``, issue 21): the space's checks and views, every searcher
respecting the conditions (in-process through the Searcher API, and one real Tune sweep per
searcher family with a trainable that fails on an inactive parameter or a missing active one),
grid counts, results and report cells, warm start from a conditional sweep."""

from __future__ import annotations

import itertools
import math
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from raytune_hpo.errors import UserError
from raytune_hpo.plan import warm_start
from raytune_hpo.searchers import SEARCHERS, create_searcher
from raytune_hpo.sweep.space import IMPUTED, SearchSpace
from raytune_hpo.sweep.spec import SweepSpec
from raytune_hpo.testing import CONDITIONAL, check_conditional, drive

# The issue's sweep file.
ISSUE = {
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
    "momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"optimizer": "sgd"}},
    "beta1": {"type": "float", "low": 0.8, "high": 0.999,
              "when": {"optimizer": ["adam", "rmsprop"]}},
    "layers": {"type": "int", "low": 1, "high": 3},
    "width3": {"type": "int", "low": 8, "high": 128, "log": True, "when": {"layers": [3]}},
}  # fmt: skip
SEARCHED = set(ISSUE)
# Five configurations in all, each with an inactive dimension: a searcher that spends an
# evaluation on a move there repeats a configuration at once.
DISCRETE = {
    "opt": {"type": "categorical", "choices": ["a", "b"]},
    "k": {"type": "int", "low": 1, "high": 3, "when": {"opt": "b"}},
    "m": {"type": "categorical", "choices": ["x", "y"], "when": {"opt": "a"}},
}
GRIDDED = {
    **ISSUE,
    "momentum": {**ISSUE["momentum"], "grid": [0.5, 0.9]},
    "beta1": {**ISSUE["beta1"], "grid": [0.9]},
    "width3": {**ISSUE["width3"], "grid": [8, 64]},
}  # 16 active combinations
CUSTOM = [n for n in SEARCHERS if n not in ("random", "grid")]
OPTIONS = {"lhs": {"budget": 24}, "rsa": {"budget": 24}, "hypertiling": {"budget": 24}}


def needed(config: dict) -> set[str]:
    """The parameters of ISSUE that apply to ``config``."""
    out = {"optimizer", "layers", "momentum" if config["optimizer"] == "sgd" else "beta1"}
    return out | ({"width3"} if config["layers"] == 3 else set())


def strict(config: dict) -> float:
    """The objective, failing on an inactive parameter or a missing active one."""
    got = set(config) & SEARCHED
    assert got == needed(config), f"got {sorted(got)}, needs {sorted(needed(config))}"
    loss = config["layers"] / 10 + (config.get("momentum", 0.9) - 0.9) ** 2
    return loss + (math.log(config["width3"]) - 3) ** 2 if "width3" in config else loss


def make(name: str, space=ISSUE, seed: int = 0):
    kw = OPTIONS.get(name, {})
    return create_searcher(name, space=space, metric="loss", mode="min", seed=seed, **kw)


# ---------------------------------------------------------------------- the space
@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"momentum": {"when": {"optimizr": "sgd"}}}, "space.momentum.when", "unknown parent"),
        ({"width3": {"when": {"beta1": 0.9}}}, "space.width3.when", "a parent must be"),
        ({"momentum": {"when": {"optimizer": "sgdd"}}}, "space.momentum.when", "never be 'sgdd'"),
        ({"width3": {"when": {"layers": [4]}}}, "space.width3.when", "can never be 4"),
        ({"width3": {"when": {"layers": 2.5}}}, "space.width3.when", "can never be 2.5"),
        ({"momentum": {"when": {"fixed": 3}}}, "space.momentum.when", "is a constant"),
        ({"momentum": {"when": "sgd"}}, "space.momentum.when", "must map parent names"),
        ({"momentum": {"when": {"optimizer": []}}}, "space.momentum.when", "list of values is"),
    ],
)
def test_bad_conditions_name_their_field(change, field, says):
    space = {**ISSUE, "fixed": 3}
    for name, extra in change.items():
        space[name] = {**space[name], **extra}
    with pytest.raises(UserError) as e:
        SearchSpace.from_dict(space)
    assert str(e.value).startswith(f"{field}: ") and says in str(e.value), e.value


def test_cycles_contradictions_constants_and_unreachable_grids_are_refused():
    a = {"type": "int", "low": 0, "high": 1}
    cases = [
        ({"a": {**a, "when": {"b": 1}}, "b": {**a, "when": {"a": 1}}}, "space.a.when", "cycle"),
        ({"a": a, "b": {**a, "when": {"a": 1}}, "c": {**a, "when": {"a": 0, "b": 1}}},
         "space.c.when", "can never apply"),
        ({"a": a, "c": {"value": 2, "when": {"a": 1}}}, "space.c.when", "constant"),
        ({"a": {**a, "grid": [0]}, "b": {**a, "grid": [1], "when": {"a": 1}}}, "space.b.grid",
         "never uses these values"),
        ({"a": {"type": "int", "low": 0, "high": 99}, "b": {**a, "grid": [1], "when": {"a": 1}}},
         "space.b.grid", "not gridded"),
    ]  # fmt: skip
    for space, field, says in cases:
        with pytest.raises(UserError) as e:
            SearchSpace.from_dict(space)
        assert e.value.field == tuple(field.split(".")) and says in e.value.message, e.value


def test_a_bad_condition_in_a_sweep_file_is_one_line_exit_2(tmp_path, one_line_error):
    bad = {**ISSUE, "momentum": {**ISSUE["momentum"], "when": {"optimizer": "nadam"}}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"space": bad, "trainable": {"model": "mlp"}}))
    one_line_error(["run", str(path)], "space.momentum.when: optimizer can never be 'nadam'")


def test_unit_cube_configs_hold_the_active_parameters_only():
    space = SearchSpace.from_dict(ISSUE)
    assert space.conditional and not space.flat().conditional
    assert space.order.index(("optimizer",)) < space.order.index(("momentum",))
    seen = set()
    for u in np.random.default_rng(0).random((200, space.dims)):
        cfg = space.from_unit(u)
        assert set(cfg) == needed(cfg) and not space.problems(cfg)
        seen.add((cfg["optimizer"], cfg["layers"]))
        back = space.to_unit(cfg)
        off = [i for i, path in enumerate(space.params) if path[0] not in cfg]
        assert (back[off] == IMPUTED).all() and space.from_unit(back) == pytest.approx(cfg)
        on = space.active_mask(u)[0]
        assert {path[0] for path, a in zip(space.params, on, strict=True) if a} == set(cfg)
        assert (space.canonical(u)[on] == u[on]).all() and (
            space.canonical(u)[~on] == IMPUTED
        ).all()
    assert len(seen) == 9
    cfg = {"optimizer": "adam", "beta1": 0.9, "layers": 1}
    assert space.problems({**cfg, "momentum": 0.7}) == [
        "momentum given where it does not apply (optimizer is 'sgd')"
    ]
    assert space.problems({"optimizer": "sgd", "layers": 1}) == ["momentum missing"]
    assert space.active_config({**cfg, "momentum": 0.7, "data": 1}) == {**cfg, "data": 1}


def test_grid_is_every_active_combination_once():
    gridded = {
        **ISSUE,
        "momentum": {**ISSUE["momentum"], "grid": [0.5, 0.9]},
        "beta1": {**ISSUE["beta1"], "grid": [0.9, 0.99, 0.999]},
        "width3": {**ISSUE["width3"], "grid": [8, 32, 128]},
    }
    space = SearchSpace.from_dict(gridded)
    grid = space.grid()
    # Brute force: the cartesian product, trimmed to what applies, without repeats.
    axes = [p.grid_values(path) for path, p in space.params.items()]
    expected = {
        space.key(space.active_config(dict(zip(ISSUE, combo, strict=True))))
        for combo in itertools.product(*axes)
    }
    assert len(grid) == len(expected) == (2 + 2 * 3) * (2 + 3) == 40
    assert {space.key(c) for c in grid} == expected
    assert all(set(c) == needed(c) for c in grid)
    assert len(space.flat().grid()) == 3 * 2 * 3 * 3 * 3  # flat: the cartesian product


def test_configspace_holds_the_conditions():
    import ConfigSpace as CS

    chain = {"type": "int", "low": 1, "high": 4, "when": {"width3": 8, "optimizer": "sgd"}}
    cs = SearchSpace.from_dict({**ISSUE, "w3": chain}).to_configspace(seed=0)
    conds = {c.child.name: c for c in cs.conditions}
    assert isinstance(conds["momentum"], CS.EqualsCondition) and conds["momentum"].value == 1
    assert isinstance(conds["beta1"], CS.InCondition) and set(conds["beta1"].values) == {0, 2}
    assert isinstance(conds["width3"], CS.EqualsCondition) and conds["width3"].value == 3
    assert isinstance(conds["w3"], CS.AndConjunction)
    for c in cs.sample_configuration(50):
        assert ("momentum" in c) == (c["optimizer"] == 1) and ("w3" in c) == (
            c.get("width3") == 8 and c["optimizer"] == 1
        )


def test_a_space_saved_before_conditions_existed_loads_without_them():
    space = SearchSpace.from_dict({"x": {"type": "float", "low": 0, "high": 1}})
    del space.__dict__["conditions"]  # as pickled by an earlier version
    loaded = pickle.loads(pickle.dumps(space))
    assert loaded.conditions == {} and loaded.from_unit([0.5]) == {"x": 0.5}


def test_the_sweep_file_keeps_its_conditions_through_its_copy_and_submit():
    """``resume`` reads the copy the run writes (sweep.yaml); ``submit`` ships the spec in
    the job's environment."""
    from raytune_hpo.jobs.client import SWEEP_ENV, runtime_env

    spec = SweepSpec.from_dict({"space": ISSUE, "trainable": {"model": "mlp"}})
    again = SweepSpec.from_dict(yaml.safe_load(spec.to_yaml()))
    assert again.search_space == spec.search_space and again.search_space.conditional
    shipped = yaml.safe_load(runtime_env(spec)["env_vars"][SWEEP_ENV])
    assert SweepSpec.from_dict(shipped).search_space == spec.search_space


def test_the_trainable_check_sends_a_conditional_value_with_parents_that_make_it_apply():
    from typing import Literal

    from pydantic import BaseModel, Field, model_validator

    from raytune_hpo.train.contract import check_space_against

    class Settings(BaseModel):  # a trainable that takes momentum only with SGD
        optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
        momentum: float = Field(0.0, ge=0)
        beta1: float = 0.9
        layers: int = 1
        width3: int = 16

        @model_validator(mode="after")
        def _sgd_only(self):
            if self.momentum and self.optimizer != "sgd":
                raise ValueError("momentum needs sgd")
            return self

    check_space_against(Settings, {}, SearchSpace.from_dict(ISSUE))  # sent with optimizer sgd
    flat = SearchSpace.from_dict(ISSUE).flat()
    with pytest.raises(UserError, match="momentum needs sgd"):
        check_space_against(Settings, {}, flat)
    bad = {**ISSUE, "momentum": {**ISSUE["momentum"], "low": -0.5}}
    with pytest.raises(UserError) as e:
        check_space_against(Settings, {}, SearchSpace.from_dict(bad))
    assert str(e.value).startswith("space.momentum: ") and "-0.5" in e.value.message


# ---------------------------------------------------------------------- every searcher
@pytest.mark.parametrize("name", CUSTOM)
def test_every_searcher_sends_exactly_the_active_parameters(name):
    check_conditional(lambda seed: make(name, CONDITIONAL, seed))  # the plug-ins' check
    cfgs = drive(make(name), 24, f=strict)  # strict fails on a missing or inactive parameter
    assert len(cfgs) >= 12, f"{name}: only {len(cfgs)} suggestions"


def test_the_conditional_check_catches_a_searcher_that_ignores_conditions():
    flat = SearchSpace.from_dict(CONDITIONAL).flat()
    with pytest.raises(AssertionError, match="should hold"):
        check_conditional(lambda seed: make("sobol", flat, seed))


@pytest.mark.parametrize("name", CUSTOM)
def test_every_searcher_saves_and_restores_mid_run_over_a_conditional_space(name, tmp_path):
    ref = make(name, seed=3)
    drive(ref, 6, f=strict)
    pending = [(f"p{i}", ref.suggest(f"p{i}")) for i in range(2)]
    ref.save(str(tmp_path / "s.pkl"))
    restored = make(name, seed=99)
    restored.restore(str(tmp_path / "s.pkl"))
    for s in (ref, restored):
        for tid, cfg in pending:
            s.on_trial_complete(tid, {"loss": strict(cfg), "training_iteration": 1})
    assert drive(restored, 6, start=100, f=strict) == drive(ref, 6, start=100, f=strict)


def discrete_loss(c: dict) -> float:
    assert ("k" in c) == (c["opt"] == "b") and ("m" in c) == (c["opt"] == "a"), c
    return c.get("k", 0) + (c.get("m") == "y")


@pytest.mark.parametrize("name", ["pso", "approx_gradient"])
def test_no_two_evaluations_are_equal_on_their_active_parameters(name):
    """A move in an inactive dimension is no evaluation: the five configurations at most,
    each once, then FINISHED."""
    space = SearchSpace.from_dict(DISCRETE)
    for seed in range(3):
        cfgs = drive(make(name, DISCRETE, seed), 40, f=discrete_loss)
        keys = [space.key(c) for c in cfgs]
        assert len(keys) == len(set(keys)) and len(keys) <= 5, cfgs
    s = make(name, DISCRETE, 0)  # concurrently: nothing evaluated twice while running either
    live = [(f"c{i}", s.suggest(f"c{i}")) for i in range(6)]
    given = [c for _, c in live if isinstance(c, dict)]
    assert len({space.key(c) for c in given}) == len(given)


def test_pso_carries_an_inactive_coordinate_and_uses_it_when_it_applies():
    x = {"type": "float", "low": 0.0, "high": 1.0, "when": {"opt": "b"}}
    s = make("pso", {"opt": DISCRETE["opt"], "x": x})
    cfgs = drive(s, 40, f=lambda c: (c["opt"] == "a") + (c.get("x", 0) - 0.3) ** 2)
    assert min(abs(c["x"] - 0.3) for c in cfgs if "x" in c) < 0.05  # it searched x where it applies


def test_lhs_stratifies_a_conditional_parameter_over_the_points_where_it_applies():
    n = 60
    s = create_searcher("lhs", space=ISSUE, metric="loss", mode="min", seed=1, budget=n)
    cfgs = drive(s, n, f=strict)
    assert len(cfgs) == n
    space = SearchSpace.from_dict(ISSUE)
    for name, applies in (("momentum", "sgd"), ("beta1", ("adam", "rmsprop"))):
        u = [space.to_unit(c)[list(ISSUE).index(name)] for c in cfgs if c["optimizer"] in applies]
        strata = sorted(int(x * len(u)) for x in u)
        assert strata == list(range(len(u))), (name, strata)


def test_rsa_keeps_its_distance_within_each_subspace():
    s = make("rsa")
    cfgs = drive(s, 24, f=strict)
    space = SearchSpace.from_dict(ISSUE)
    pts = s._pts.rows
    groups = s._codes(space.active_mask(pts))
    assert len(set(groups)) == len({tuple(sorted(c)) for c in cfgs}) >= 4  # its subspaces
    assert len(set(s._scales)) > 1  # radii by the subspace's dimensions
    for i, j in itertools.combinations(range(len(pts)), 2):
        if groups[i] == groups[j]:
            r = s.radius * s._scales[groups[i]]
            assert np.linalg.norm(pts[i] - pts[j]) >= r * (1 - 1e-9)


def test_tpe_trials_hold_a_parameter_only_when_it_applies():
    s = make("tpe")
    drive(s, 20, f=strict)
    assert s.study.sampler._group  # Optuna's grouped multivariate TPE
    for t in s.study.trials:
        decoded = s.space.from_library(t.params)
        assert set(t.params) == needed(decoded), t.params


def test_bohb_models_the_conditional_configspace():
    s = make("bohb")
    assert len(s.model.configspace.conditions) == 3
    cfgs = drive(s, 30, f=strict)
    assert len(cfgs) == 30


def test_a_tune_domain_plugin_cannot_search_a_conditional_space(tmp_path):
    (tmp_path / "plug.py").write_text(
        "from ray.tune.search import Searcher\n\n"
        "class Plug(Searcher):\n"
        "    def set_search_properties(self, metric, mode, config, **spec):\n"
        "        return True\n\n"
        "    def suggest(self, trial_id):\n"
        "        return {}\n"
    )
    with pytest.raises(UserError, match="cannot say when a parameter applies"):
        create_searcher("plug.py:Plug", space=ISSUE, base_dir=str(tmp_path))
    create_searcher("plug.py:Plug", space={"x": ISSUE["layers"]}, base_dir=str(tmp_path))


@pytest.mark.parametrize("name", ["random", "grid"])
def test_ray_variant_generator_trims_its_trials_and_restores(name):
    """Ray's own generator (random, grid), driven as Tune drives it, without Ray running."""
    from ray import cloudpickle
    from ray.tune.experiment import Experiment

    space = SearchSpace.from_dict(GRIDDED)
    grid = name == "grid"

    def trainable(config):
        pass

    def experiment():
        config = {"fixed": 1, **space.to_tune(grid=grid)}
        n, storage = 1 if grid else 20, tempfile.mkdtemp()
        return Experiment("x", run=trainable, config=config, num_samples=n, storage_path=storage)

    g = create_searcher(name, space=space, seed=0)
    g.add_configurations([experiment()])
    first = [g.next_trial() for _ in range(5)]
    again = create_searcher(name, space=space, seed=5)
    again.set_state(cloudpickle.loads(cloudpickle.dumps(g.get_state())))
    rest = []
    while (t := again.next_trial()) is not None:
        rest.append(t)
    trials = first + rest
    assert all(set(t.config) - {"fixed"} == needed(t.config) for t in trials)
    assert all(set(t.evaluated_params) == needed(t.config) for t in trials)
    assert all(("momentum=" in t.experiment_tag) == ("momentum" in t.config) for t in trials)
    keys = [space.key(t.config) for t in trials]
    if grid:
        assert len(keys) == len(set(keys)) == len(space.grid()) == g.total_samples == 16
    else:
        assert len(trials) == 20


# ---------------------------------------------------------------------- warm start
def test_warm_start_from_a_conditional_sweep(tmp_path):
    rows = [
        {"status": "OK", "epochs": 2, "val_accuracy": 0.9, "config.optimizer": "sgd",
         "config.momentum": 0.9, "config.beta1": None, "config.layers": 3, "config.width3": 16},
        {"status": "OK", "epochs": 2, "val_accuracy": 0.8, "config.optimizer": "adam",
         "config.momentum": None, "config.beta1": 0.95, "config.layers": 1, "config.width3": None},
    ]  # fmt: skip
    old = tmp_path / "old"
    old.mkdir()
    spec = SweepSpec.from_dict({"name": "old", "space": ISSUE, "trainable": {"model": "mlp"}})
    (old / "sweep.yaml").write_text(spec.to_yaml())
    pd.DataFrame(rows).to_csv(old / "results.csv", index=False)
    now = SweepSpec.from_dict(
        {"space": ISSUE, "warm_start": str(old), "trainable": {"model": "mlp"}}
    )
    points, notes = warm_start.load(now)
    assert not notes and [p.config for p in points] == [
        {"optimizer": "sgd", "momentum": 0.9, "layers": 3, "width3": 16},
        {"optimizer": "adam", "beta1": 0.95, "layers": 1},
    ]
    for name in CUSTOM:  # each takes them and goes on sending only what applies
        s = make(name)
        warm_start.tell(s, points)
        assert drive(s, 4, f=strict), name
    # From a flat earlier sweep: a value where it does not apply here is left out.
    row = {"optimizer": "adam", "momentum": 0.7, "beta1": 0.9, "layers": 2, "width3": 64}
    point, why = warm_start._point(
        now.search_space, {"config": row, "value": 1.0, "error": False}, {}
    )
    assert why is None and point.config == {"optimizer": "adam", "beta1": 0.9, "layers": 2}


# ---------------------------------------------------------------------- real sweeps
STRICT = """\
from ray import tune

SEARCHED = {"optimizer", "momentum", "beta1", "layers", "width3"}


def train(config):
    need = {"optimizer", "layers", "momentum" if config["optimizer"] == "sgd" else "beta1"}
    need |= {"width3"} if config["layers"] == 3 else set()
    got = set(config) & SEARCHED
    if got != need:
        raise ValueError(f"got {sorted(got)}, needs {sorted(need)}")
    tune.report({"loss": config["layers"] + config.get("momentum", 0.5)})
"""


@pytest.mark.integration
def test_a_real_sweep_per_searcher_family(ray_session, tmp_path):
    from raytune_hpo.cli.commands import main
    from raytune_hpo.results.table import load_results
    from raytune_hpo.run.sweep import run_sweep

    (tmp_path / "strict.py").write_text(STRICT)
    for name in ("grid", "random", "pso", "tpe", "bohb"):
        spec = SweepSpec.from_dict(
            {
                "name": name,
                "metric": "loss",
                "mode": "min",
                "num_samples": 6,
                "max_concurrent": 2,
                "seed": 0,
                "space": GRIDDED,
                "searcher": {"name": name},
                "scheduler": {"name": "fifo"},  # bohb's searcher too: one result per trial
                "trainable": {"function": "strict.py:train", "metrics": ["loss"]},
                "storage_path": str(tmp_path / "out"),
            },
            base_dir=str(tmp_path),
        )
        result = run_sweep(spec)
        assert set(result.best_config) == needed(result.best_config)
        table = load_results(result.path).table  # read back from results.csv
        assert (table["status"] == "OK").all(), table.get("error")
        assert len(table) == (16 if name == "grid" else 6)
        for _, row in table.iterrows():
            config = {n: row[f"config.{n}"] for n in ISSUE if pd.notna(row[f"config.{n}"])}
            assert set(config) == needed(config), row  # an inactive cell is empty
    assert main(["report", result.path, "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "report.md").read_text()
    assert "apply to some trials only and are left out" in page
    assert (tmp_path / "report" / "parallel_coordinates.png").is_file()
    assert Path(result.path, "sweep.yaml").read_text().count("when:") == 3
