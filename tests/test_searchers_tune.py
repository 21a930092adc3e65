"""Each custom searcher in a real Tune run: from a plain Tuner (space from param_space) with two
trials at once, and from a sweep file."""

import time

import pytest
from ray import tune

from raytune_hpo.plan.assemble import assemble
from raytune_hpo.run.sweep import run_sweep
from raytune_hpo.searchers import SEARCHERS, create_searcher, owns_space
from raytune_hpo.sweep.spec import SweepSpec

pytestmark = pytest.mark.integration
CUSTOM = [n for n in SEARCHERS if owns_space(n)]


def make_meeting(where: str):
    """A trial that waits (up to a minute) until another trial is running too: whether two
    trials ran at once is a condition, not a timing, so a loaded machine cannot fake it."""

    # Nested, so cloudpickle ships it by value: Ray workers cannot import this test module.
    def meeting(config):
        import os
        import uuid

        me = os.path.join(where, uuid.uuid4().hex)
        open(me, "w").close()
        deadline = time.monotonic() + 60
        while len(os.listdir(where)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        met = len(os.listdir(where)) >= 2
        loss = (config["x"] - 0.5) ** 2 + (config["k"] - 2) ** 2 + (config["c"] != "b")
        tune.report({"loss": loss, "met": met})

    return meeting


@pytest.mark.parametrize("name", CUSTOM)
def test_plain_tuner_runs_two_trials_at_once(ray_session, tmp_path, name):
    kw = {"budget": 4} if name in ("lhs", "rsa") else {}
    searcher = create_searcher(name, seed=0, **kw)  # space, metric, mode from the Tuner
    where = tmp_path / "running"
    where.mkdir()
    tuner = tune.Tuner(
        make_meeting(str(where)),
        param_space={"x": tune.uniform(0, 1), "k": tune.randint(1, 4), "c": tune.choice("abc")},
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            metric="loss",
            mode="min",
            num_samples=4,
            max_concurrent_trials=2,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), verbose=0),
    )
    results = tuner.fit()
    df = results.get_dataframe()
    assert len(df) == 4 and not results.errors
    assert df["config/x"].between(0, 1).all() and df["config/k"].isin([1, 2, 3]).all()
    # The first trial waited for a second one: a searcher that hands out one trial at a
    # time leaves it alone for the whole minute.
    assert df["met"].all(), f"{name} ran its trials one at a time"


def test_sweep_file_with_pso_and_lhs_budget(ray_session, tmp_path):
    base = {
        "storage_path": str(tmp_path),
        "num_samples": 4,
        "max_concurrent": 2,
        "space": {
            "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
            "hidden": [64],
        },
        "trainable": {"epochs": 1, "model": "mlp"},
    }
    for name in ("pso", "lhs"):
        spec = SweepSpec.from_dict({**base, "name": name, "searcher": {"name": name}})
        if name == "lhs":
            plan = assemble(spec)
            assert plan.searcher()._budget == 4  # num_samples became the design size
        result = run_sweep(spec)
        df = result.table
        assert len(df) == 4 and (df["status"] == "OK").all()
        assert df["config.lr"].between(1e-3, 1e-2).all()
        assert result.best["val_accuracy"] > 0.5
