"""The sweep file's ``loggers``: one-line errors for what cannot run, and a real sweep on digits
whose TensorBoard event files and MLflow runs are read back."""

import importlib.util
import math
from pathlib import Path

import pytest
import yaml

from raytune_hpo.plan import loggers
from raytune_hpo.run.sweep import run_sweep
from raytune_hpo.sweep.spec import SweepSpec


def sweep_file(tmp_path, **fields) -> str:
    path = tmp_path / "sweep.yaml"
    base = {"storage_path": str(tmp_path / "out"), "trainable": {"model": "mlp", "epochs": 1}}
    path.write_text(yaml.safe_dump({**base, **fields}))
    return str(path)


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (["tensorbord"], "loggers.0: unknown logger 'tensorbord'; allowed: tensorboard, mlflow"),
        ([{"mlflow": {"uri": "x"}}], "loggers.0.mlflow.uri: unknown option; allowed: tracking_uri"),
        (
            [{"tensorboard": {"dir": "x"}}],
            "loggers.0.tensorboard.dir: unknown option; allowed: none",
        ),
        ([{"wandb": {"mode": "cloud"}}], "loggers.0.wandb.mode: got 'cloud'; allowed: offline"),
        ([{"mlflow": {"tags": "a"}}], "loggers.0.mlflow.tags: a mapping"),
        (["mlflow", "mlflow"], "loggers.1: logger 'mlflow' is listed twice"),
        ([3], "loggers.0: a logger name or {name: {options}}"),
    ],
)
def test_bad_loggers_are_one_line_errors(tmp_path, entries, expected, one_line_error):
    one_line_error(["run", sweep_file(tmp_path, loggers=entries)], expected)
    assert not (tmp_path / "out").exists()  # nothing started


def test_a_missing_package_names_its_pip_line(tmp_path, monkeypatch, one_line_error):
    monkeypatch.setitem(loggers.PACKAGES, "mlflow", "no_such_module_here")
    one_line_error(
        ["run", sweep_file(tmp_path, loggers=["mlflow"])],
        "loggers: mlflow needs the no_such_module_here package: pip install 'raytune-hpo[mlflow]'",
    )


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_wandb_without_its_package(tmp_path, one_line_error):
    one_line_error(
        ["run", sweep_file(tmp_path, loggers=["wandb"])], "pip install 'raytune-hpo[wandb]'"
    )


def test_mlflow_default_store_needs_a_local_sweep_directory(tmp_path, one_line_error):
    file = sweep_file(tmp_path, loggers=["mlflow"], storage_path="s3://bucket/sweeps")
    one_line_error(["run", file], "loggers.mlflow.tracking_uri: needed when storage_path")


def scalars(trial_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list(trial_dir.glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    acc = EventAccumulator(str(files[0]))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


@pytest.mark.integration
def test_tensorboard_and_mlflow_on_a_real_sweep(ray_session, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    import mlflow

    # Ray's own automatic loggers off: the event files must come from `loggers`.
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    spec = SweepSpec.from_dict(
        {
            "name": "logged",
            "storage_path": str(tmp_path),
            "num_samples": 2,
            "loggers": ["tensorboard", {"mlflow": {"tags": {"team": "hpo"}}}],
            "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
            "trainable": {"model": "mlp", "epochs": 2},
        }
    )
    result = run_sweep(spec)
    table = result.table.set_index("trial_id")
    assert len(table) == 2 and (table["status"] == "OK").all()
    exp = Path(result.path)

    # TensorBoard: one event file per trial, one scalar per epoch, the last one the table's.
    for trial_id, row in table.iterrows():
        (trial_dir,) = [d for d in exp.iterdir() if d.is_dir() and trial_id in d.name]
        curve = scalars(trial_dir, "ray/tune/val_accuracy")
        assert [step for step, _ in curve] == [1, 2]
        assert curve[-1][1] == pytest.approx(row["val_accuracy"], rel=1e-6)

    # MLflow: a store inside the sweep directory, one finished run per trial.
    assert (exp / loggers.MLFLOW_DB).is_file()
    mlflow.set_tracking_uri(loggers.mlflow_uri({}, str(exp)))
    runs = mlflow.search_runs(experiment_names=["logged"])
    assert len(runs) == 2 and (runs["status"] == "FINISHED").all()
    assert (runs["tags.raytune_hpo.sweep"] == exp.name).all()
    assert (runs["tags.team"] == "hpo").all()
    pairs = zip(runs["params.lr"], runs["metrics.val_accuracy"], strict=True)
    by_lr = {float(lr): acc for lr, acc in pairs}
    expected = dict(zip(table["config.lr"], table["val_accuracy"], strict=True))
    assert by_lr.keys() == expected.keys()
    assert all(math.isclose(by_lr[k], expected[k], rel_tol=1e-9) for k in expected)
    history = mlflow.MlflowClient().get_metric_history(runs["run_id"][0], "val_accuracy")
    assert sorted(m.step for m in history) == [1, 2]
    # Its artifacts would go there too, not under ./mlruns of the current directory.
    artifacts = mlflow.get_experiment_by_name("logged").artifact_location
    assert artifacts == (exp / loggers.MLFLOW_ARTIFACTS).as_uri()


@pytest.mark.integration
def test_wandb_writes_offline_runs_per_trial(ray_session, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    # Unset: offline by default. (The driver sets it; monkeypatch restores it afterwards.)
    monkeypatch.setenv("WANDB_MODE", "")
    spec = SweepSpec.from_dict(
        {
            "name": "wb",
            "storage_path": str(tmp_path),
            "num_samples": 2,
            "loggers": ["wandb"],
            "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
            "trainable": {"model": "mlp", "epochs": 1},
        }
    )
    result = run_sweep(spec)
    runs = sorted(Path(result.path).glob("*/wandb/offline-run-*"))
    assert sorted(r.name.rsplit("-", 1)[-1] for r in runs) == sorted(result.table["trial_id"])
