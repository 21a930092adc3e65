"""A user's subclass of one of our searchers keeps what it adds across a restore, as Ray's own
searchers do: Ray's users add hooks by subclassing (Ray's restore tests count results in
``on_trial_result``). Our searchers save declared, versioned fields; what a subclass sets is
saved beside them (``raytune_hpo.searchers._contract``)."""

from __future__ import annotations

import json
import os
import tempfile

import pytest
from ray.tune.search import Searcher, SearchGenerator

from raytune_hpo.searchers import SEARCHERS, create_searcher
from raytune_hpo.sweep.space import SearchSpace

SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}, "y": {"type": "int", "low": 1, "high": 9}}


def counting(base: type) -> type:
    """``base`` with a counter of results, the way Ray's users add a hook."""

    class Counting(base):
        def __init__(self, *args, **kwargs):
            self.counted = 0  # before super().__init__: some users set theirs first
            super().__init__(*args, **kwargs)
            self.seen: list[str] = []

        def on_trial_result(self, trial_id, result):
            super().on_trial_result(trial_id, result)
            self.counted += 1
            self.seen.append(trial_id)

    return Counting


def make(name: str, cls: type | None = None, **kw):
    """A searcher of ours by registry name (``cls``: a subclass of its class)."""
    options = {"budget": 20} if name in ("lhs", "rsa", "hypertiling") else {}
    built = create_searcher(name, space=SPACE, metric="loss", mode="min", seed=3, **options)
    if cls is None:
        return built
    if isinstance(built, Searcher):
        space = SearchSpace.from_dict(SPACE)
        return cls(space=space, metric="loss", mode="min", seed=3, **options, **kw)
    return cls(random_state=3)  # random, grid: Ray's own BasicVariantGenerator


def results(s, n: int, start: int = 0) -> None:
    """Suggest ``n`` trials and report two results for each, as Tune does."""
    for i in range(start, start + n):
        tid = f"t{i}"
        cfg = s.suggest(tid) if isinstance(s, Searcher) else {"x": 0.5, "y": 2}
        if cfg is None or cfg == Searcher.FINISHED:
            break
        for step in (1, 2):
            s.on_trial_result(tid, {"loss": cfg["x"] * step, "training_iteration": step})
        s.on_trial_complete(tid, {"loss": cfg["x"], "training_iteration": 2})


@pytest.mark.parametrize("name", list(SEARCHERS))
def test_a_subclass_counting_results_counts_across_a_restore(name, tmp_path):
    """Through the directory Ray's ``Tuner.restore`` reads (``save_to_dir``/``restore_from_dir``
    of the search algorithm Tune wraps the searcher in)."""
    cls = counting(type(make(name)))
    first = make(name, cls)
    results(first, 2)
    wrap = (lambda s: SearchGenerator(s)) if isinstance(first, Searcher) else (lambda s: s)
    wrap(first).save_to_dir(str(tmp_path), session_str="s")
    again = make(name, cls)
    wrap(again).restore_from_dir(str(tmp_path))
    assert (again.counted, again.seen) == (4, ["t0", "t0", "t1", "t1"]), name
    results(again, 1, start=2)
    assert again.counted == 6, name


@pytest.mark.parametrize("name", [n for n in SEARCHERS if n not in ("random", "grid")])
def test_our_own_states_keep_their_declared_fields_only(name):
    s = make(name)
    results(s, 3)
    assert set(s.get_state()) == {"searcher", "version", "state"}


class Locked(counting(type(make("sobol")))):
    def __init__(self, *args, **kwargs):
        import threading

        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()


def test_an_attribute_that_cannot_be_pickled_is_named_not_silently_dropped(tmp_path):
    s = make("sobol", Locked)
    results(s, 1)
    with pytest.warns(RuntimeWarning, match=r"Locked\.lock is not saved .* _derived"):
        s.save(str(tmp_path / "state.pkl"))
    again = make("sobol", Locked)
    again.restore(str(tmp_path / "state.pkl"))
    assert again.counted == 2 and again.lock is not s.lock


def train(config):
    """Three results with checkpoints; the first run fails before the third."""
    from ray import tune

    done = 0
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as d, open(os.path.join(d, "step.json")) as f:
            done = json.load(f)
    for step in range(done + 1, 4):
        if step == 3 and not os.path.exists(config["go"]):
            raise RuntimeError("the first run ends here")
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "step.json"), "w") as f:
                json.dump(step, f)
            tune.report({"loss": config["x"] * step}, checkpoint=tune.Checkpoint.from_directory(d))


class LoggedCount(counting(type(make("sobol")))):
    """Counts, and writes each count where the test reads it (the driver's searcher)."""

    def on_trial_result(self, trial_id, result):
        super().on_trial_result(trial_id, result)
        with open(self.log, "a") as f:
            f.write(f"{self.counted}\n")


@pytest.mark.integration
def test_across_tuner_restore_resume_errored_as_rays_own_searcher(ray_session, tmp_path):
    """The issue's case: a trial errors after two results, ``Tuner.restore(...,
    resume_errored=True)`` resumes it for the third. Ray's OptunaSearch (which saves its
    whole ``__dict__``) counts 3; so must ours."""
    import sys

    from ray import cloudpickle, tune
    from ray.tune.search.optuna import OptunaSearch

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests

    class RaysOwn(counting(OptunaSearch)):
        def on_trial_result(self, trial_id, result):
            super().on_trial_result(trial_id, result)
            with open(self.log, "a") as f:
                f.write(f"{self.counted}\n")

    searchers = {
        "ours": LoggedCount(
            space=SearchSpace.from_dict({"x": SPACE["x"]}), metric="loss", mode="min", seed=0
        ),
        "ray": RaysOwn(space={"x": tune.uniform(0, 1)}, metric="loss", mode="min", seed=0),
    }
    counts = {}
    for who, searcher in searchers.items():
        searcher.log = str(tmp_path / f"{who}.log")
        go = tmp_path / f"{who}.go"
        tune.Tuner(
            train,
            param_space={"go": str(go)},
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=1),
            run_config=tune.RunConfig(name=who, storage_path=str(tmp_path), verbose=0),
        ).fit()
        go.touch()
        tune.Tuner.restore(str(tmp_path / who), train, resume_errored=True).fit()
        counts[who] = (tmp_path / f"{who}.log").read_text().split()
    assert counts == {"ours": ["1", "2", "3"], "ray": ["1", "2", "3"]}
