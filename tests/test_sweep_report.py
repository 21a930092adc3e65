"""`raytune-hpo report` on sweep directories: one sweep (plots, endings, parameter importance),
sweeps side by side, and the page as a browser draws it."""

from pathlib import Path

import browser
import numpy as np
import pytest

from raytune_hpo.cli.commands import kind_of, main
from raytune_hpo.results import report as sweep_report
from raytune_hpo.results.table import read_sweep
from raytune_hpo.run.sweep import run_sweep
from raytune_hpo.sweep.spec import SweepSpec, UserError

pytestmark = pytest.mark.integration

EPOCHS = 3


@pytest.fixture(scope="module")
def digits_sweep(ray_session, tmp_path_factory):
    """Grid x ASHA on digits: some trials finish, some are stopped, lr 1e6 diverges."""
    tmp = tmp_path_factory.mktemp("digits")
    spec = SweepSpec.from_dict(
        {
            "name": "digits",
            "storage_path": str(tmp),
            "seed": 0,
            "max_concurrent": 2,
            "searcher": {"name": "grid"},
            "space": {
                "lr": {
                    "type": "float",
                    "low": 1e-3,
                    "high": 1e6,
                    "log": True,
                    "grid": [1e-3, 3e-2, 1e6],
                },
                "batch_size": {"type": "categorical", "choices": [32, 64]},
            },
            "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
            "trainable": {"model": "mlp", "optimizer": "sgd", "epochs": EPOCHS},
        }
    )
    return run_sweep(spec)


def test_sweep_report_plots_endings_and_importance(digits_sweep, tmp_path):
    exp = digits_sweep.path
    rec = read_sweep(exp)
    table = rec.table()
    assert len(table) == 6
    end = sweep_report.endings(rec)
    # How each trial ended agrees with its status and epochs.
    for _, row in table.iterrows():
        how = end[row["trial_id"]]
        if row["status"] == "ERROR":
            assert how == "failed"
        else:
            assert how == ("finished" if row["epochs"] == EPOCHS else "stopped early")
    assert (end == "failed").sum() == 2  # lr 1e6 diverges with either batch size
    assert (end == "finished").sum() >= 1

    assert main(["report", exp, "--out", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # self-contained: plots inline
    for name in ("best_so_far", "learning_curves", "parallel_coordinates", "importance"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000
        assert f"![{name}.png]({name}.png)" in (tmp_path / "report.md").read_text()
    assert "Parameter importance" in page and "fANOVA on 4 trials" in page
    assert "finished" in page and "failed" in page
    # Without --out a local sweep's report lands in the sweep directory.
    assert main(["report", exp]) == 0
    assert (Path(exp) / "report.html").is_file() and (Path(exp) / "importance.png").is_file()
    screenshot(tmp_path / "report.html", tmp_path / "shot.png")


def screenshot(page, shot):
    pixels = browser.screenshot(page, shot, height=3000)
    assert pixels.shape[0] >= 2900 and pixels.shape[1] >= 1200
    rows_with_ink = (pixels[..., :3].std(axis=(1, 2)) > 0.01).mean()
    assert rows_with_ink > 0.4  # tables and plots drawn, not a blank page
    # The learning curves are drawn: the green of finished trials is on the page.
    rgb = (pixels[..., :3] * 255).round().astype(int).reshape(-1, 3)
    assert (np.abs(rgb - (44, 160, 44)).sum(axis=1) < 30).sum() > 200


QUADRATIC = """\
from ray import tune


def quadratic(config):
    # Only x matters: fANOVA must give it nearly all the importance.
    tune.report({"loss": (config["x"] - 0.3) ** 2, "other": config["y"]})
"""


def function_sweep(tmp_path, searcher, metric="loss", mode="min", name=None):
    (tmp_path / "quadratic.py").write_text(QUADRATIC)
    spec = SweepSpec.from_dict(
        {
            "name": name or searcher,
            "metric": metric,
            "mode": mode,
            "num_samples": 24,
            "seed": 3,
            "searcher": {"name": searcher},
            "space": {
                "x": {"type": "float", "low": 0, "high": 1},
                "y": {"type": "float", "low": 0, "high": 1},
            },
            "trainable": {"function": "quadratic.py:quadratic", "metrics": ["loss", "other"]},
            "storage_path": str(tmp_path / "out"),
        },
        base_dir=str(tmp_path),
    )
    return run_sweep(spec).path


def test_importance_and_sweeps_side_by_side(ray_session, tmp_path):
    sobol = function_sweep(tmp_path, "sobol")
    rec = read_sweep(sobol)
    imp, why = sweep_report.importance(rec, rec.table())
    scores = dict(zip(imp["parameter"], imp["importance"], strict=True))
    assert scores["x"] > 0.8 > 0.2 > scores["y"], scores
    assert why.startswith("fANOVA on 24 trials")
    # One report trial per function call: every trial ran its whole (single-step) budget.
    assert set(sweep_report.endings(rec)) == {"finished"}

    rand = function_sweep(tmp_path, "random")
    out = tmp_path / "both"
    assert main(["report", sobol, rand, "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 1  # the best-so-far curves, together
    assert "Sweeps sobol vs random" in page
    assert "Best trials: sobol" in page and "Best trials: random" in page
    md = (out / "report.md").read_text()
    table = md.split("## Sweeps side by side")[1].split("##")[0]
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert len(rows) == 4  # header, rule, one row per sweep
    for path in (sobol, rand):
        best = read_sweep(path).table()["loss"].min()
        assert f"{best:.4g}" in table

    other = function_sweep(tmp_path, "random", metric="other", mode="max", name="other")
    with pytest.raises(UserError, match="different metrics"):
        sweep_report.build([sobol, other], out=str(tmp_path / "x"))


def test_report_dispatch_on_what_the_directory_holds(tmp_path, capsys):
    with pytest.raises(UserError, match="no such directory"):
        kind_of([str(tmp_path / "gone")])
    with pytest.raises(UserError, match="neither a sweep directory"):
        kind_of([str(tmp_path)])
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "study.yaml").write_text("name: s\n")
    (tmp_path / "s" / "trials.csv").write_text("problem\n")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "sweep.yaml").write_text("name: w\n")
    assert kind_of([str(tmp_path / "s")]) == "study"
    assert kind_of([str(tmp_path / "w"), str(tmp_path / "w")]) == "sweep"
    with pytest.raises(UserError, match="one study directory"):
        kind_of([str(tmp_path / "s"), str(tmp_path / "w")])


def test_many_trials_are_drawn_as_bands_and_one_epoch_as_an_error_bar():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.collections import PolyCollection
    from matplotlib.container import ErrorbarContainer

    from raytune_hpo.names import BUDGET_ATTR
    from raytune_hpo.results import curves

    rng = np.random.default_rng(3)
    n = curves.MAX_CURVES + 50  # past the trial-by-trial limit: aggregates are drawn
    rows = [  # finished trials ran 3 epochs, stopped ones only their first
        {"trial_id": f"f{i}", BUDGET_ATTR: e, "acc": e + rng.normal()}
        for i in range(n)
        for e in (1, 2, 3)
    ] + [{"trial_id": f"s{i}", BUDGET_ATTR: 1, "acc": rng.normal()} for i in range(n)]
    history = pd.DataFrame(rows)
    end = pd.Series(
        {f"f{i}": "finished" for i in range(n)} | {f"s{i}": "stopped early" for i in range(n)}
    )
    table = pd.DataFrame({"trial_id": [f"f{i}" for i in range(n)]})
    fig, ax = plt.subplots()
    curves._curves_of(ax, history, "acc", end, table)
    labels = ax.get_legend_handles_labels()[1]
    assert f"finished (median of {n:,})" in labels and f"stopped early (median of {n:,})" in labels
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1  # the one-epoch trials: median with its 10-90% range
    ((x, y),) = bars[0].lines[0].get_xydata()
    stopped = history[history["trial_id"].str.startswith("s")]["acc"]
    assert x == 1 and y == pytest.approx(stopped.median())
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1  # the 3-epoch band
    # the best trials are still drawn one by one over their epochs
    assert sum(len(line.get_xdata()) == 3 for line in ax.get_lines()) >= curves.SHOWN
    plt.close(fig)
