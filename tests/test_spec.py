"""Sweep file validation: good files load, bad ones give one line naming the field."""

import os
import re
import subprocess
import sys
import textwrap

import pytest
import yaml

from raytune_hpo.plan.assemble import assemble
from raytune_hpo.sweep.spec import SpecError, SweepSpec

SPECS = os.path.join(os.path.dirname(__file__), "..", "specs", "sweeps")
STUDIES = os.path.join(os.path.dirname(__file__), "..", "specs", "studies")


def plan_of(data):
    return assemble(SweepSpec.from_dict(data))


def load(name):
    with open(os.path.join(SPECS, name)) as f:
        return yaml.safe_load(f)


def write(tmp_path, text, name="sweep.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_quickstart_loads_and_builds_param_space():
    plan = assemble(SweepSpec.quickstart())
    assert plan.searcher_name == "random" and plan.scheduler_name == "asha"
    assert plan.samples == 12
    ps = plan.param_space()
    assert ps["model"] == "tinyvgg" and ps["dataset"] == "digits" and ps["seed"] == 0
    assert set(plan.spec.search_space.names) <= set(ps)


def test_the_shipped_quickstart_equals_the_example_copy():
    from importlib import resources

    packaged = resources.files("raytune_hpo").joinpath("specs", "quickstart.yaml").read_text()
    with open(os.path.join(SPECS, "quickstart.yaml")) as f:
        assert f.read() == packaged


@pytest.mark.parametrize("name", sorted(os.listdir(STUDIES)))
def test_every_shipped_study_is_valid(name):
    from raytune_hpo.study import StudySpec, check

    study = check(StudySpec.from_yaml(os.path.join(STUDIES, name)))
    assert study.repetitions >= 1 and study.methods


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(SPECS) if n.endswith(".yaml")))
def test_every_shipped_spec_is_valid_when_its_data_is_present(tmp_path, name):
    from raytune_hpo.sweep.sections import TORCHVISION

    data = load(name)
    dataset = data.get("trainable", {}).get("dataset")
    if dataset == "imagefolder":
        (tmp_path / "a").mkdir()
        data["trainable"]["data"]["root"] = str(tmp_path)
    elif dataset in TORCHVISION:  # the torchvision files a user would have put there
        (tmp_path / TORCHVISION[dataset][1]).mkdir(parents=True)
        data["trainable"]["data"]["root"] = str(tmp_path)
    plan = assemble(SweepSpec.from_dict(data, source=name, base_dir=SPECS))  # code beside
    assert plan.samples >= 1


def test_grid_spec_counts_the_tinyvgg_grid():
    data = load("tinyvgg-grid.yaml")
    plan = plan_of({**data, "trainable": {**data["trainable"], "dataset": "digits", "data": {}}})
    assert len(plan.spec.search_space.grid()) == 3 * 3 * 3 * 3  # lr x batch x dropout x opt
    assert plan.samples == 1


def test_options_reach_the_scheduler():
    plan = plan_of(
        {
            "scheduler": {"name": "asha", "grace_period": 3, "reduction_factor": 3},
            "trainable": {"epochs": 9},
        }
    )
    sched = plan.scheduler()
    assert sched._max_t == 9 and sched._reduction_factor == 3  # ASHA's own fields


BAD = [
    (
        "searcher: {name: bayes}",
        r"searcher: unknown searcher 'bayes'; allowed: random, grid, sobol, lhs, rsa, hypertiling, "
        r"pso, approx_gradient, bohb, bayesopt, tpe, nsga2, ngopt, auto, smac, or a plug-in "
        r"FILE\.py:Class",
    ),
    (
        "scheduler: {name: pbtx}",
        r"scheduler: unknown scheduler 'pbtx'; allowed: fifo, asha, median, hyperband, bohb, "
        "pbt, pb2",
    ),
    (
        "scheduler: {name: asha, grace: 2}",
        r"scheduler: unknown option\(s\) \['grace'\].*allowed: "
        r"grace_period",
    ),
    ("scheduler: {name: asha, reduction_factor: 1}", r"scheduler\.reduction_factor: must be > 1"),
    ("space: {lr: {type: float, low: 0.1, high: 0.01}}", r"space\.lr: empty or inverted range"),
    ("space: {lr: {type: float, low: 0, high: 0.1, log: true}}", r"space\.lr\.low: log: true"),
    ("space: {optimizer: {type: categorical, choices: []}}", r"space\.optimizer\.choices: must be"),
    (
        "space: {optimizer: {type: categorical, choices: [adamw]}}",
        r"space\.optimizer\.choices: \['adamw'\] not allowed; "
        r"allowed: \['adam', 'sgd', 'rmsprop'\]",
    ),
    ("space: {lrr: {type: float, low: 0.1, high: 1}}", r"space\.lrr: not a setting.*allowed: "),
    ("metric: val_f1", r"metric: 'val_f1' is not reported by the trainable; allowed: epoch, "),
    ("metric: val_accuracy_std", r"metric: 'val_accuracy_std' is not reported"),
    ("mode: maximum", r"mode: Input should be 'min' or 'max'"),
    ("num_samples: 0", r"num_samples: Input should be greater than or equal to 1"),
    ("trainable: {model: vgg16}", r"trainable\.model: Input should be 'tinyvgg', 'lenet5'"),
    ("trainable: {epochz: 3}", r"trainable\.epochz: unknown field; allowed: model, dataset"),
    (
        "trainable: {dataset: imagefolder, data: {root: /nonexistent/x}}",
        r"trainable\.data\.root: directory '/nonexistent/x' does not exist",
    ),
    (
        "trainable: {dataset: cifar10, data: {root: /nonexistent/y}}",
        r"trainable\.data\.root: cifar10 files not found at '/nonexistent/y/cifar-10-batches-py'; "
        r"set `download: true`",
    ),
    (
        "searcher: {name: grid}\nspace: {lr: {type: float, low: 0.001, high: 0.1}}",
        r"space\.lr: grid search needs explicit `grid` values",
    ),
    ("resources: {gpu: 1.5}", r"resources\.gpu: fractions are allowed below 1 only"),
    ("bogus: 1", r"bogus: unknown field; allowed: name, description, metric, mode, space"),
    ("- just\n- a list", r"the sweep file must be a YAML mapping"),
    ("name: [unclosed", r"not valid YAML \(line 1\)"),
    # Values that reach the trainable are checked against the type it expects.
    ("space: {lr: {low: 0.001, high: 0.1}}", r"space\.lr\.type: missing; allowed: float, int"),
    (
        "space: {hidden: {type: int, low: 8, high: 64}}",
        r"space\.hidden: int range value 8 does not fit the trainable's hidden \(Input should "
        r"be a valid list\)",
    ),
    (
        "space: {lr: {type: categorical, choices: [fast, slow]}}",
        r"space\.lr: categorical value 'fast' does not fit the trainable's lr",
    ),
    (
        "space: {epochs: {type: float, low: 1, high: 5}}",
        r"space\.epochs: float range value 1\.0 does not fit the trainable's epochs",
    ),
    ("space: {momentum: high}", r"space\.momentum: Input should be a valid number"),
    ("trainable: {lr: '0.1'}", r"trainable\.lr: Input should be a valid number"),
    ("trainable: {hidden: 64}", r"trainable\.hidden: Input should be a valid list"),
    ("trainable: {augment: 'yes'}", r"trainable\.augment: Input should be a valid boolean"),
    ("num_samples: 1000000000000000000000000000000", r"num_samples: Input should be less than"),
    ("max_concurrent: 0", r"max_concurrent: Input should be greater than or equal to 1"),
    ("seed: 1.5", r"seed: Input should be a valid integer"),
    ("storage_path: [a]", r"storage_path: Input should be a valid string"),
    (
        "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nspace: {x: *e}",
        r"more than 100000 values once aliases are expanded",
    ),
    ("space:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 40)), r"nested deeper"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[b[0][:40] for b in BAD])
def test_bad_sweep_files_name_the_field(tmp_path, text, message):
    with pytest.raises(SpecError, match=message) as err:
        assemble(SweepSpec.from_yaml(write(tmp_path, text)))
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match=r"nope\.yaml: sweep file does not exist"):
        SweepSpec.from_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "text",
    ["searcher: {name: bayes}", "space: {lr: {type: float, low: 1, high: 0}}", None],
    ids=["unknown-searcher", "inverted-range", "missing-file"],
)
def test_cli_bad_input_one_line_exit_2_and_no_ray(tmp_path, text):
    path = write(tmp_path, text) if text else tmp_path / "missing.yaml"
    ray_tmp = tmp_path / "raytmp"
    ray_tmp.mkdir()
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    proc = subprocess.run(
        [sys.executable, "-m", "raytune_hpo.cli", "run", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("raytune-hpo: error: "), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert list(ray_tmp.iterdir()) == []  # Ray never started


def test_cli_searchers_lists_the_registry():
    proc = subprocess.run(
        [sys.executable, "-m", "raytune_hpo.cli", "searchers"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    from raytune_hpo.schedulers import SCHEDULERS
    from raytune_hpo.searchers import SEARCHERS

    for name in [*SEARCHERS, *SCHEDULERS]:
        assert f"  {name} " in proc.stdout


LR = {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}


def test_bohb_searcher_pairs_with_hyperband_for_bohb_by_default():
    from raytune_hpo.schedulers._hyperband import RestorableHyperBandForBOHB

    plan = plan_of({"searcher": {"name": "bohb"}, "trainable": {"epochs": 9}, "space": LR})
    assert plan.scheduler_name == "bohb"
    sched = plan.scheduler()
    assert isinstance(sched, RestorableHyperBandForBOHB) and sched._max_t_attr == 9
    assert not plan.warnings


def test_scheduler_bohb_needs_searcher_bohb():
    with pytest.raises(SpecError, match=r"scheduler\.name: 'bohb'.*searcher 'bohb' only"):
        plan_of({"searcher": {"name": "random"}, "scheduler": {"name": "bohb"}})


@pytest.mark.parametrize("sched", ["asha", "median", "fifo"])
def test_bohb_under_another_scheduler_is_allowed_with_a_warning(sched):
    plan = plan_of({"searcher": {"name": "bohb"}, "scheduler": {"name": sched}, "space": LR})
    (line,) = plan.warnings
    assert f"under scheduler {sched}" in line and "Falkner" in line


def test_a_searcher_that_compares_budgets_under_asha_warns_ours_do_not():
    plan = plan_of({"searcher": {"name": "tpe"}, "scheduler": {"name": "asha"}, "space": LR})
    assert "different budgets" in plan.warnings[0]
    for name in ("pso", "approx_gradient", "sobol"):
        plan = plan_of({"searcher": {"name": name}, "scheduler": {"name": "asha"}, "space": LR})
        assert not plan.warnings
        assert plan.searcher()._across_budgets  # it learns only from comparable results


@pytest.mark.parametrize(
    "scheduler, message",
    [
        ({"name": "hyperband", "reduction_factor": 1}, "reduction_factor: must be > 1"),
        ({"name": "asha", "grace_period": 20}, "grace_period: 20 is more than max_t 10"),
        ({"name": "median", "threshold": "high"}, "threshold: must be a number"),
        ({"name": "median", "threshold_metric": "val_accuracy"}, "allowed: val_loss, train_loss"),
        ({"name": "median", "window": 0}, "window: must be a number >= 1"),
        ({"name": "hyperband", "eta": 3}, "allowed: reduction_factor, stop_last_trials, max_t"),
    ],
)
def test_bad_scheduler_options_name_the_field(scheduler, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        plan_of({"scheduler": scheduler})


@pytest.mark.parametrize(
    "searcher, message",
    [
        ({"name": "bayesopt", "n_initial_points": 0}, "n_initial_points: must be >= 1"),
        ({"name": "tpe", "n_initial_points": 2.5}, "n_initial_points: must be an integer"),
        ({"name": "bohb", "random_fraction": 2}, "random_fraction: must be in [0, 1]"),
        ({"name": "bohb", "eta": 3}, "allowed: points_to_evaluate, time_attr, min_points_in"),
    ],
)
def test_bad_model_based_searcher_options_name_the_field(searcher, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        plan_of({"searcher": searcher, "space": LR})


def test_the_readme_documents_every_setting_of_the_builtin_trainable():
    from raytune_hpo.sweep.sections import CNNSettings, DataSettings

    with open(os.path.join(os.path.dirname(__file__), "..", "README.md")) as f:
        readme = f.read()
    reference = readme.split("## Sweep file reference", 1)[1].split("\n## ", 1)[0]
    for name in [*CNNSettings.model_fields, *DataSettings.model_fields]:
        assert re.search(rf"\b{name}\b", reference), f"{name} is not in the README's reference"


def test_hyperband_warns_when_max_concurrent_keeps_its_brackets_from_filling():
    data = {"scheduler": {"name": "hyperband"}, "trainable": {"epochs": 9}, "max_concurrent": 2}
    (line,) = plan_of(data).warnings
    assert "largest bracket (9 trials) cannot fill" in line
    assert not plan_of({**data, "max_concurrent": 9}).warnings
