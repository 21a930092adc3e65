"""Your own model and your own searcher: user trainables (a function with a helper module, a
Trainable class), the resumable-state helper, plug-in searchers by file and by entry point,
and every bad input a user will type, each a one-line error before Ray starts."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from raytune_hpo.plan.assemble import assemble
from raytune_hpo.results.table import read_sweep
from raytune_hpo.run.sweep import run_sweep
from raytune_hpo.sweep.spec import SpecError, SweepSpec

TRAIN = """
import helpers  # a module beside train.py: it must import on every node too
from ray import tune


def train(config):
    for step in range(1, config["steps"] + 1):
        tune.report({"score": helpers.score(config["x"], config["layers"], step), "step": step})
"""
HELPERS = """
def score(x, layers, step):
    return -((x - 0.3) ** 2) - 0.1 * abs(layers - 2) + 0.01 * step
"""
SWEEP = {
    "name": "mine",
    "metric": "score",
    "mode": "max",
    "num_samples": 4,
    "max_concurrent": 2,
    "space": {
        "x": {"type": "float", "low": 0.0, "high": 1.0},
        "layers": {"type": "int", "low": 1, "high": 4},
    },
    "searcher": {"name": "pso", "swarm_size": 2},
    "scheduler": {"name": "asha", "max_t": 3, "grace_period": 1},
    "trainable": {"function": "train.py:train", "config": {"steps": 3}},
}


def project(tmp_path: Path, sweep: dict | None = None, **files: str) -> Path:
    """A user's project folder: sweep.yaml, train.py, helpers.py (and any other files)."""
    root = tmp_path / "project"
    root.mkdir(exist_ok=True)
    for name, text in {"train.py": TRAIN, "helpers.py": HELPERS, **files}.items():
        (root / name).write_text(textwrap.dedent(text))
    (root / "sweep.yaml").write_text(yaml.safe_dump(sweep or SWEEP, sort_keys=False))
    return root / "sweep.yaml"


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 600):
    """`raytune-hpo ARGS` in ``cwd`` with a Ray temp dir of its own (short: Ray's socket
    paths must stay under 107 bytes), kept as ``proc.ray_tmp``."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    full = {**os.environ, "RAY_TMPDIR": str(ray_tmp), **(env or {})}
    full.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "raytune_hpo.cli", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    proc.ray_tmp = ray_tmp
    return proc


@pytest.mark.integration
def test_user_trainable_runs_from_another_directory(tmp_path):
    sweep = project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = cli(
        "run", str(sweep), "--storage-path", str(tmp_path / "out"), "--top", "4", cwd=elsewhere
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "of train.py:train" in proc.stdout and "Best score" in proc.stdout
    (exp,) = (tmp_path / "out").iterdir()
    table = (exp / "results.csv").read_text()
    assert table.count("\n") == 5 and ",OK," in table  # 4 trials, all fine
    # The copy in the sweep directory finds the code again: results and resume work from it.
    copy = SweepSpec.from_yaml(exp / "sweep.yaml")
    assert Path(copy.base_dir) == sweep.parent
    assert assemble(copy).trainable.label == "train.py:train"


def test_trainable_class_and_python_api(ray_session, tmp_path):
    from ray import tune

    from raytune_hpo import run_sweep

    class Quadratic(tune.Trainable):
        def setup(self, config):
            self.x = config["x"]

        def step(self):
            return {"loss": (self.x - 0.25) ** 2, "done": self.iteration >= 1}

    spec = SweepSpec.from_dict(
        {
            "metric": "loss",
            "mode": "min",
            "num_samples": 3,
            "space": {"x": {"type": "float", "low": 0, "high": 1}},
            "trainable": {"metrics": ["loss"], "settings": {"x": "float"}},
            "storage_path": str(tmp_path),
        }
    )
    result = run_sweep(spec, trainable=Quadratic)
    assert len(result.table) == 3 and (result.table["status"] == "OK").all()
    assert result.table["loss"].iloc[0] == min(result.table["loss"])


def test_metric_never_reported_stops_the_sweep_with_one_line(ray_session, tmp_path):
    from ray import tune

    from raytune_hpo import run_sweep
    from raytune_hpo.sweep.spec import UserError

    def no_score(config):
        for _ in range(20):
            tune.report({"loss": config["x"], "accuracy": 0.5})

    spec = SweepSpec.from_dict(
        {
            "metric": "score",
            "num_samples": 8,
            "space": {"x": {"type": "float", "low": 0, "high": 1}},
            "storage_path": str(tmp_path),
        }
    )
    with pytest.raises(UserError) as err:
        run_sweep(spec, trainable=no_score)
    msg = str(err.value)
    assert "\n" not in msg and "'score' is not reported by no_score" in msg
    assert "accuracy, loss" in msg  # the keys it did report


RESUMABLE = """
import raytune_hpo


def train(config):
    state = raytune_hpo.restore_state() or {"step": 0, "value": 0.0}
    for step in range(state["step"] + 1, config["steps"] + 1):
        state = {"step": step, "value": state["value"] + config["x"]}
        raytune_hpo.report({"score": state["value"], "step": step}, state=state)
"""


@pytest.mark.integration
def test_helper_state_survives_hyperband_pauses(ray_session, tmp_path):
    from raytune_hpo import run_sweep

    sweep = project(
        tmp_path,
        {
            "metric": "score",
            "mode": "max",
            # HyperBand's largest bracket (eta 3, max_t 9) holds 9 trials; no max_concurrent:
            # paused trials count against it, so a bracket could never fill.
            "num_samples": 9,
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "searcher": {"name": "random"},
            "scheduler": {"name": "hyperband", "max_t": 9, "reduction_factor": 3},
            "trainable": {"function": "resumable.py:train", "config": {"steps": 9}},
            "storage_path": str(tmp_path / "out"),
        },
        **{"resumable.py": RESUMABLE},
    )
    result = run_sweep(SweepSpec.from_yaml(sweep))
    histories = _histories(Path(result.path))
    assert len(histories) == 9
    resumed = 0
    for rows in histories:
        # Every result continues the trial's own state: its step is the iteration, and the
        # value it accumulated is step * x, even across pauses.
        for r in rows:
            assert r["step"] == r["training_iteration"]
            assert r["score"] == pytest.approx(r["step"] * r["config"]["x"])
        resumed += any(r["iterations_since_restore"] < r["training_iteration"] for r in rows)
    assert resumed >= 1, "no trial was paused and resumed from its state"
    # Trials HyperBand stopped while paused are recorded as finished in Ray's experiment
    # state (what `results`, the report and `resume` read), not left as PAUSED.
    (state,) = Path(result.path).glob("experiment_state-*.json")
    statuses = [json.loads(t)["status"] for t, _ in json.loads(state.read_text())["trial_data"]]
    assert statuses == ["TERMINATED"] * 9, statuses
    assert (read_sweep(result.path).table()["status"] == "OK").all()


def _histories(exp: Path) -> list[list[dict]]:
    import json

    out = []
    for f in exp.glob("*/result.json"):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if rows:
            out.append(rows)
    return out


# ---------------------------------------------------------------------- plug-in searchers
PLUGIN = '''
from ray.tune.search import Searcher


class Halving(Searcher):
    """Bisection on one parameter of our SearchSpace: the plug-in contract's smallest case."""

    def __init__(self, space=None, metric=None, mode=None, *, seed=None, start=0.5):
        super().__init__(metric=metric, mode=mode)
        self.space, self.next = space, start
        self.made = []

    def suggest(self, trial_id):
        (name,) = self.space.names
        self.made.append(self.next)
        cfg = {name: self.next}
        self.next /= 2
        return cfg

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass
'''


def plugin_spec(tmp_path, name="plug.py:Halving", **options):
    root = tmp_path / "proj"
    root.mkdir(exist_ok=True)
    (root / "plug.py").write_text(PLUGIN)
    data = {
        "metric": "loss",
        "mode": "min",
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
        "searcher": {"name": name, **options},
        "trainable": {"function": "train.py:f"},
    }
    (root / "train.py").write_text(
        "from ray import tune\n\ndef f(config):\n    tune.report({'loss': config['x']})\n"
    )
    (root / "sweep.yaml").write_text(yaml.safe_dump(data))
    return SweepSpec.from_yaml(root / "sweep.yaml")


def test_plugin_searcher_by_file_gets_our_space_and_options(tmp_path):
    plan = assemble(plugin_spec(tmp_path, start=0.8))
    s = plan.searcher()
    assert [s.suggest(f"t{i}")["x"] for i in range(3)] == [0.8, 0.4, 0.2]
    assert plan.owns_space and plan.param_space() == {}


def test_plugin_searcher_by_entry_point(tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist = site / "halving_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "halving_plugin.py").write_text(PLUGIN)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: halving-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[raytune_hpo.searchers]\nhalving = halving_plugin:Halving\n"
        "gone = halving_plugin:Gone\n"  # a broken plug-in: listed with its reason
    )
    monkeypatch.syspath_prepend(str(site))
    plan = assemble(plugin_spec(tmp_path, name="halving"))
    assert plan.searcher().suggest("t0") == {"x": 0.5}
    # `raytune-hpo searchers` lists it (a fresh process finds it through PYTHONPATH).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    proc = subprocess.run(
        [sys.executable, "-m", "raytune_hpo.cli", "searchers"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "halving" in proc.stdout and "halving_plugin:Halving" in proc.stdout
    (gone,) = [line for line in proc.stdout.splitlines() if line.strip().startswith("gone ")]
    assert "halving_plugin:Gone  (cannot be used: " in gone and "Traceback" not in proc.stderr


BAD_USER = [
    ({"function": "missing.py:train"}, "trainable.function: file '"),
    ({"function": "train.py:nope"}, "trainable.function: train.py has no 'nope'; it defines:"),
    ({"function": "broken.py:train"}, "importing broken failed: "),
    ({"function": "train.py:NUMBER"}, "trainable.function: train.py:NUMBER is 'int', not callable"),
    ({"function": "train.py:NotTrainable"}, "is a class but not a ray.tune.Trainable subclass"),
    ({"function": "no_such_pkg.mod:f"}, "no module named 'no_such_pkg.mod' is installed"),
    ({"function": "train.py"}, "is not FILE.py:NAME or package.module:NAME"),
    ({"function": "train.py:train", "metrics": ["loss"]}, "metric: 'score' is not reported"),
    (
        {"function": "train.py:train", "settings": {"x": "float", "steps": "int"}},
        "space.layers: not among",
    ),
    (
        {"function": "train.py:train", "settings": {"x": "int", "layers": "int", "steps": "int"}},
        "space.x: float range value 0.0 does not fit the trainable's x",
    ),
    (
        {"function": "train.py:train", "settings": {"x": "float", "layers": "int", "steps": "str"}},
        "trainable.config.steps: Input should be a valid string",
    ),
    ({"function": "train.py:train", "settings": {"x": "complex"}}, "trainable.settings.x:"),
]


@pytest.mark.parametrize("section, message", BAD_USER, ids=[m for _, m in BAD_USER])
def test_bad_user_trainables_are_one_line(tmp_path, section, message):
    extra = {
        "broken.py": "import os\n\nx = 1 / 0\n",
        "train.py": TRAIN + "\nNUMBER = 3\n\nclass NotTrainable:\n    pass\n",
    }
    sweep = project(tmp_path, {**SWEEP, "trainable": {"config": {"steps": 3}, **section}}, **extra)
    with pytest.raises(SpecError) as err:
        assemble(SweepSpec.from_yaml(sweep))
    assert message in str(err.value) and "\n" not in str(err.value)
    if "broken" in message:
        assert "broken.py:3: ZeroDivisionError: division by zero" in str(err.value)


BAD_OTHER = [
    ({"scheduler": {"name": "asha"}}, "scheduler.max_t: scheduler asha needs the budget"),
    ({"scheduler": {"name": "hyperband"}}, "scheduler.max_t: scheduler hyperband needs"),
    ({"scheduler": {"name": "asha", "max_t": 0}}, "scheduler.max_t: must be an integer >= 1"),
    ({"searcher": {"name": "nothere.py:S"}}, "searcher.name: file '"),
    ({"searcher": {"name": "train.py:train"}}, "train.py:train is not a ray.tune.search.Searcher"),
    ({"searcher": {"name": "helpers.py:nope"}}, "searcher.name: helpers.py has no 'nope'"),
    ({"searcher": {"name": "plug.py:Halving", "speed": 2}}, "unknown option(s) ['speed']"),
    ({"runtime_env": {"working_dir": "."}}, "runtime_env.working_dir: not passed to Ray"),
    ({"runtime_env": {"env_vars": {"A": 1}}}, "runtime_env: runtime_env['env_vars'] must be"),
    ({"runtime_env": {"pip": ["x"], "conda": {"a": 1}}}, "runtime_env: The 'pip' field"),
]


@pytest.mark.parametrize("over, message", BAD_OTHER, ids=[m for _, m in BAD_OTHER])
def test_bad_schedulers_searchers_and_runtime_envs_are_one_line(tmp_path, over, message):
    sweep = project(tmp_path, {**SWEEP, **over}, **{"plug.py": PLUGIN})
    with pytest.raises(SpecError) as err:
        assemble(SweepSpec.from_yaml(sweep))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_exit_2_for_a_user_trainable_that_fails_to_import(tmp_path):
    sweep = project(
        tmp_path,
        {**SWEEP, "trainable": {"function": "broken.py:train"}},
        **{"broken.py": "import helpers\n\nraise RuntimeError('no GPU here')\n"},
    )
    proc = cli("run", str(sweep), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "broken.py:3: RuntimeError: no GPU here" in proc.stderr
    assert not any(proc.ray_tmp.iterdir())  # Ray never started


def test_a_searcher_learns_from_a_user_trainable_with_no_fixed_config(ray_session, tmp_path):
    """Ray tells a searcher its metric and mode only through set_search_properties, which it
    skips for an empty param_space (a user trainable without `config:`): the searcher must
    know them anyway, or it scores every result as a failure and learns nothing."""
    import glob

    from raytune_hpo.searchers import PSOSearch

    (tmp_path / "q.py").write_text(
        "from ray import tune\n\n\ndef q(config):\n"
        "    tune.report({'score': -(config['x'] - 0.3) ** 2})\n"
    )
    spec = SweepSpec.from_dict(
        {
            "metric": "score",
            "mode": "max",
            "num_samples": 6,
            "searcher": {"name": "pso", "swarm_size": 3},
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "trainable": {"function": "q.py:q"},
            "storage_path": str(tmp_path / "runs"),
        },
        base_dir=str(tmp_path),
    )
    exp = run_sweep(spec).path
    (state,) = glob.glob(f"{exp}/searcher-state-*.pkl")
    searcher = PSOSearch()
    searcher.restore(state)
    _, losses = searcher.observations
    assert len(losses) == 6 and np.isfinite(losses).all(), losses
