"""The frictions of a first day, each fixed: a misspelt name gets "did you mean", an error in a
``--set`` names the flag, an inactive parameter is an empty cell, a long plot title stays
inside its figure, and the README's first own sweep is one that runs. None starts Ray."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raytune_hpo.errors import SpecError, did_you_mean
from raytune_hpo.plan.assemble import assemble
from raytune_hpo.sweep.spec import SweepSpec

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        ({"num_sampels": 4}, "did you mean 'num_samples'?"),
        ({"searcher": {"name": "tpee"}}, "did you mean 'tpe'?"),
        ({"scheduler": {"name": "hyperbnd"}}, "did you mean 'hyperband'?"),
        ({"searcher": {"name": "pso", "swarmsize": 4}}, "did you mean 'swarm_size'?"),
        ({"trainable": {"model": "lenet"}}, "did you mean 'lenet5'?"),
        ({"metric": "val_acuracy"}, "did you mean 'val_accuracy'?"),
    ],
)
def test_a_misspelt_name_gets_the_nearest_allowed_one(data, hint):
    with pytest.raises(SpecError) as e:
        assemble(SweepSpec.from_dict(data))
    said = str(e.value)
    assert said.endswith(hint) and ("allowed: " in said or "Input should be " in said), said


def test_no_suggestion_for_a_name_like_none_of_them():
    assert did_you_mean("zzz", ["random", "grid"]) == ""
    assert did_you_mean(3, ["random"]) == ""


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--set", "trainable.epochs=abc"], "error: --set trainable.epochs=abc: trainable.epochs:"),
        (["--set", "scheduler.grace_period=0"], "--set scheduler.grace_period=0: scheduler.grace"),
        (["--num-samples", "0"], "error: --num-samples 0: num_samples: Input should be greater"),
    ],
)
def test_an_error_in_an_override_names_the_flag_not_the_file(one_line_error, flags, expected):
    quickstart = Path(__file__).resolve().parents[1] / "specs" / "sweeps" / "quickstart.yaml"
    one_line_error(["run", str(quickstart), *flags], expected)


def test_an_error_in_the_file_still_names_the_file(one_line_error, tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("num_samples: 0\n")
    one_line_error(["run", str(sweep), "--seed", "3"], f"{sweep}: num_samples:")


def test_inactive_parameters_are_empty_cells_in_the_terminal_table():
    from raytune_hpo.cli.common import format_table

    table = pd.DataFrame(
        {
            "trial_id": ["a", "b"],
            "status": ["OK", "OK"],
            "loss": [0.5, 0.25],
            "config.optimizer": ["sgd", "adam"],
            "config.momentum": [0.9, np.nan],  # does not apply under adam
            "stopped": [np.nan, "loss 0.25 <= 0.3"],
        }
    )
    lines = format_table(table).splitlines()
    assert "NaN" not in format_table(table) and "nan" not in format_table(table)
    assert lines[1].split() == ["a", "OK", "0.5", "sgd", "0.9"]
    assert lines[2].split()[:4] == ["b", "OK", "0.25", "adam"]


def test_a_long_title_is_wrapped_inside_its_figure():
    import matplotlib

    matplotlib.use("Agg")
    from raytune_hpo.results import plots

    fig, (ax,) = plots.figure_grid(1, width=7, height=4.6)
    title = "searched values of each trial, coloured by its val_accuracy " * 2
    ax.set_title(title)
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    assert ax.title.get_window_extent(renderer).x0 < 0  # as the report drew it: cut off
    assert plots.keep_titles_inside(fig)
    fig.tight_layout()
    box = ax.title.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1
    assert " ".join(ax.title.get_text().split()) == " ".join(title.split())  # nothing lost


def test_the_readmes_first_own_sweep_assembles(tmp_path):
    """The two blocks under "Your first own sweep", as a user would save them."""
    text = README.read_text()
    section = text.split("## Your first own sweep", 1)[1].split("\n## ", 1)[0]
    code, sweep = re.findall(r"```(?:python|yaml)\n(.*?)```", section, re.S)[:2]
    assert len(code.splitlines()) + len(sweep.splitlines()) <= 15
    (tmp_path / "my_train.py").write_text(code)
    (tmp_path / "my_sweep.yaml").write_text(sweep)
    plan = assemble(SweepSpec.from_yaml(tmp_path / "my_sweep.yaml"))
    assert (plan.samples, plan.metric, plan.searcher_name) == (8, "loss", "random")
    assert plan.trainable.function() is not None
