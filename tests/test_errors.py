"""The error every user mistake is (field path as data, formatted once) and the shared names."""

from __future__ import annotations

import pickle

import pytest

import raytune_hpo.names as names
from raytune_hpo.errors import SpecError, UserError, user_error
from raytune_hpo.plan.assemble import assemble
from raytune_hpo.sweep.spec import SweepSpec


def test_an_error_carries_its_field_and_file_as_data():
    e = UserError("must be an integer >= 1, got 0", field="swarm_size")
    assert str(e) == "swarm_size: must be an integer >= 1, got 0"
    inner = e.within("searcher").in_file("sweep.yaml")
    assert inner.field == ("searcher", "swarm_size") and inner.source == "sweep.yaml"
    assert str(inner) == "sweep.yaml: searcher.swarm_size: must be an integer >= 1, got 0"
    assert e.field == ("swarm_size",), "within/in_file changed the original"
    spec_error = inner.as_spec_error()
    assert isinstance(spec_error, SpecError) and str(spec_error) == str(inner)
    again = pickle.loads(pickle.dumps(inner))
    assert type(again) is UserError and str(again) == str(inner) and again.field == inner.field


def test_a_foreign_error_takes_the_field_it_is_raised_under():
    assert str(user_error(ValueError("bad  step\n size"), field="searcher")) == (
        "searcher: bad step size"
    )
    ours = UserError("x", field="a")
    assert user_error(ours) is ours


@pytest.mark.parametrize(
    "section, expected_field",
    [
        ({"searcher": {"name": "pso", "swarm_size": 0}}, ("searcher", "swarm_size")),
        ({"scheduler": {"name": "asha", "reduction_factor": 1}}, ("scheduler", "reduction_factor")),
        ({"searcher": {"name": "nope"}}, ("searcher",)),
        ({"metric": "accuracy"}, ("metric",)),
        ({"space": {"lr": {"type": "float", "low": 1, "high": 0}}}, ("space", "lr")),
    ],
)
def test_assembly_errors_name_their_field_as_data(section, expected_field):
    data = {"space": {"lr": {"type": "float", "low": 1e-3, "high": 0.1}}, **section}
    with pytest.raises(SpecError) as info:
        assemble(SweepSpec.from_dict(data, source="s.yaml"))
    assert info.value.field == expected_field and info.value.source == "s.yaml"


def test_the_shared_names_are_ray_tunes_own():
    from ray.tune import result

    assert names.BUDGET_ATTR == result.TRAINING_ITERATION
    assert names.TRIAL_ID == result.TRIAL_ID
    assert names.TIME_TOTAL_S == result.TIME_TOTAL_S
    assert names.TIMESTAMP == result.TIMESTAMP
    assert names.RESULT_FILE == result.EXPR_RESULT_FILE
    assert names.PARAMS_FILE == result.EXPR_PARAM_FILE
    assert names.ERROR_FILE == result.EXPR_ERROR_FILE
    assert names.ERROR_PICKLE == result.EXPR_ERROR_PICKLE_FILE
    assert names.config_name(names.config_column("opt.lr")) == "opt.lr"
    assert names.config_name("val_accuracy") is None
