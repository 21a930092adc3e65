"""A trial's state (train/checkpoint.py): its file format loads as it was written before the
TrialState class existed, through Ray's Checkpoint too; a state continued under a new config
(population-based training) trains on with the config's optimizer and dropout rates, from the
donor's weights."""

import copy

import pytest
import torch
from torchvision.ops import DropBlock2d

from raytune_hpo.sweep.sections import FUSED_MAY_DIFFER, MUTABLE, CNNSettings, defaults
from raytune_hpo.train import checkpoint
from raytune_hpo.train.checkpoint import TrialState
from raytune_hpo.train.cnn import CNNTrainable
from raytune_hpo.train.perf import SpeedPath
from raytune_hpo.train.trainable import build_folds, fit, prepare, restore

DONOR = {"model": "tinyvgg", "epochs": 3, "lr": 3e-3, "dropout": 0.3, "dropblock": 0.1}
SGD = {**DONOR, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread, as a trial with one CPU has; the shared CPU is not oversubscribed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(config, state=None):
    out = []
    fit(config, report=lambda m, s: out.append((m, copy.deepcopy(s))), state=state)
    return out


def untimed(metrics):
    return {k: v for k, v in metrics.items() if k != "latency_ms"}


@pytest.fixture(scope="module")
def donors():
    return {"adam": run(DONOR), "sgd": run(SGD)}


def test_a_checkpoint_in_the_old_format_resumes_exactly(tmp_path):
    from ray import tune

    cfg = {**DONOR, "epochs": 4, "augment": True}
    full = run(cfg)
    s = full[1][1]  # after epoch 2
    # What fit saved before TrialState existed: torch.save of a plain dict, in state.pt.
    old = {
        "epoch": s.epoch,
        "models": s.models,
        "optimizers": s.optimizers,
        "generator": s.generator,
        "torch_rng": s.torch_rng,
    }
    torch.save(old, tmp_path / "state.pt")
    loaded = checkpoint.load_checkpoint(tune.Checkpoint.from_directory(str(tmp_path)))
    resumed = run(cfg, state=loaded)
    assert [m["epoch"] for m, _ in resumed] == [3, 4]
    for (a, _), (b, _) in zip(full[2:], resumed, strict=True):
        assert untimed(a) == pytest.approx(untimed(b), rel=1e-5)
    # And what save writes is that format still: the same file, the same keys.
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    checkpoint.save(resumed[-1][1], new_dir)
    on_disk = torch.load(new_dir / checkpoint.CHECKPOINT_FILE, weights_only=True)
    assert sorted(on_disk) == sorted(old)
    assert on_disk["epoch"] == 4 and on_disk["models"][0].keys() == s.models[0].keys()


def test_a_dict_that_is_no_state_names_what_it_lacks():
    with pytest.raises(ValueError, match="no models, optimizers"):
        TrialState.from_dict({"epoch": 1, "generator": None, "torch_rng": None})


def last_groups(reports):
    """The optimizer's hyperparameters in the last reported state (fold 0)."""
    group = reports[-1][1].optimizers[0]["param_groups"][0]
    return {k: v for k, v in group.items() if k != "params"}


def assert_continues(donor, resumed, fresh):
    """The resumed trial trains on from the donor's weights: its first epoch is the donor's
    next, its loss near the donor's last and far below a fresh start's first epoch."""
    assert resumed[0][0]["epoch"] == donor[-1][0]["epoch"] + 1
    loss, donor_loss = resumed[0][0]["train_loss"], donor[-1][0]["train_loss"]
    assert loss < 1.25 * donor_loss
    assert loss < 0.5 * fresh[0][0]["train_loss"]


def test_a_continued_state_trains_with_the_new_learning_rate(donors):
    donor = donors["adam"]
    assert last_groups(donor)["lr"] == 3e-3
    new = {**DONOR, "lr": 1e-3, "epochs": 4}
    resumed = run(new, state=donor[-1][1])
    assert last_groups(resumed)["lr"] == 1e-3
    assert_continues(donor, resumed, run({**new, "epochs": 1}))
    # The new rate is the one that trains: continuing at the donor's own rate differs.
    same = run({**DONOR, "epochs": 4}, state=donor[-1][1])
    assert same[0][0]["train_loss"] != resumed[0][0]["train_loss"]


def test_a_continued_sgd_state_takes_momentum_and_weight_decay(donors):
    donor = donors["sgd"]
    new = {**SGD, "momentum": 0.5, "weight_decay": 1e-3, "lr": 0.02, "epochs": 4}
    resumed = run(new, state=donor[-1][1])
    groups = last_groups(resumed)
    assert (groups["lr"], groups["momentum"], groups["weight_decay"]) == (0.02, 0.5, 1e-3)
    assert_continues(donor, resumed, run({**new, "epochs": 1}))


def test_a_continued_model_takes_the_new_dropout_rates_and_the_donor_weights(donors):
    state = donors["adam"][-1][1]
    cfg = {**defaults(), **DONOR, "dropout": 0.6, "dropblock": 0.25, "lr": 1e-3}
    prep = prepare(cfg)
    (fold,) = build_folds(cfg, prep, SpeedPath(prep.opts))
    gen = torch.Generator()
    assert restore([fold], gen, state, cfg, prep.device) == 4
    rates = [m.p for m in fold.model.modules() if isinstance(m, (torch.nn.Dropout, DropBlock2d))]
    assert sorted(rates) == [0.25, 0.6]
    for k, v in fold.model.state_dict().items():
        assert torch.equal(v, state.models[0][k]), k
    # The optimizer keeps the donor's moments and takes the new rate.
    assert fold.opt.param_groups[0]["lr"] == 1e-3
    saved = state.optimizers[0]["state"][0]["exp_avg"]
    assert torch.equal(fold.opt.state[next(fold.model.parameters())]["exp_avg"], saved)


def test_the_cnn_contract_names_the_settings_that_may_change_mid_run():
    mutable = CNNTrainable(CNNSettings()).mutable_settings()
    assert mutable == MUTABLE
    assert set(mutable) <= set(CNNSettings.model_fields) and set(mutable) <= set(FUSED_MAY_DIFFER)
    fixed = ("model", "batch_size", "epochs", "dataset", "optimizer", "k_folds", "seed")
    assert not set(mutable) & set(fixed)
