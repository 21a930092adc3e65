"""Fused trials: members of one vmapped model train as they would alone, leave the group
without stopping it, and report to Ray Tune as ordinary trials (real Ray, real Tune)."""

import copy
import logging
import time

import numpy as np
import pytest
import torch
from torchvision.ops import DropBlock2d

from raytune_hpo.sweep.sections import defaults
from raytune_hpo.train.checkpoint import TrialState
from raytune_hpo.train.fused import FusedTrainer, MemberDropBlock, MemberDropout
from raytune_hpo.train.fused_optim import FusedOptimizer
from raytune_hpo.train.optimizers import make_optimizer
from raytune_hpo.train.trainable import DivergedError, fit

# No dropout: without random masks a member must match its lone run up to float rounding.
# Synthetic images, not digits: digits' flat backgrounds give exact ties in max pooling, where
# a rounding-level difference between vmap's grouped convolutions and plain ones sends a
# gradient to another pixel, and the runs part by more than rounding after a few steps.
BASE = {
    "epochs": 2,
    "dropout": 0.0,
    "dropblock": 0.0,
    "seed": 3,
    "dataset": "synthetic",
    "data": {"n_samples": 800, "image_size": 8},
}
HYPER = [
    {"lr": 3e-3},
    {"lr": 1e-3, "weight_decay": 0.05, "momentum": 0.5},
    {"lr": 1e-2, "momentum": 0.0, "epochs": 1},  # leaves the group after epoch 1
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread, as a trial with one CPU has: the runs compared are then
    deterministic, and the shared CPU is not oversubscribed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def alone(config, state=None):
    out = []
    fit(config, report=lambda m, s: out.append((m, copy.deepcopy(s))), state=state)
    return out


def fused(configs, states=None):
    trainer = FusedTrainer(configs, states)
    out = {i: [] for i in range(len(configs))}
    while trainer.members:
        for i, r in trainer.train_epoch().items():
            out[i].append(r if isinstance(r, Exception) else (r[0], copy.deepcopy(r[1])))
    return out


def assert_same_training(a, b, *, rtol=1e-5, atol=1e-6):
    """Two runs' per-epoch metrics and final weights agree."""
    assert [m["epoch"] for m, _ in a] == [m["epoch"] for m, _ in b]
    for (ma, _), (mb, _) in zip(a, b, strict=True):
        for k in ("train_loss", "val_loss"):
            assert ma[k] == pytest.approx(mb[k], rel=rtol, abs=atol), k
        for k in ("train_accuracy", "val_accuracy"):  # a near-tie may flip one sample
            assert ma[k] == pytest.approx(mb[k], abs=0.003), k
    wa, wb = a[-1][1].models[0], b[-1][1].models[0]
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=rtol, atol=atol * 10)


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop"])
def test_fused_optimizers_match_torch_on_the_same_gradients(name):
    gen = torch.Generator().manual_seed(0)
    hyper = [(1e-2, 0.0, 0.9), (1e-3, 1e-2, 0.0), (3e-2, 1e-3, 0.5)]
    w = torch.randn(3, 4, 5, generator=gen)
    stacked = {"w": w.clone().requires_grad_()}
    lr, wd, mom = (torch.tensor(col) for col in zip(*hyper, strict=True))
    fo = FusedOptimizer(name, stacked, lr=lr, weight_decay=wd, momentum=mom)
    singles = [w[i].clone().requires_grad_() for i in range(3)]
    opts = [
        make_optimizer([p], {**defaults(), "optimizer": name, "lr": h[0], "weight_decay": h[1],
                         "momentum": h[2]})
        for p, h in zip(singles, hyper, strict=True)
    ]  # fmt: skip
    for _ in range(15):
        # Gradients over eight orders of magnitude: Adam's and RMSprop's normalisation and
        # the bias corrections are exercised where float32 would lose them.
        scale = 10.0 ** torch.randint(-8, 1, (3, 4, 5), generator=gen)
        g = torch.randn(3, 4, 5, generator=gen) * scale
        stacked["w"].grad = g.clone()
        fo.step()
        for i, opt in enumerate(opts):
            singles[i].grad = g[i].clone()
            opt.step()
    # float32 rounding differs by a few ulps between the stacked and the single updates and
    # compounds over 15 steps (5e-6 relative seen for RMSprop); a wrong formula (eps inside the
    # square root, a missing bias correction) is off by far more than 2e-5.
    for i in range(3):
        torch.testing.assert_close(stacked["w"][i].detach(), singles[i].detach(), rtol=2e-5, atol=0)


@pytest.fixture(scope="module")
def lone_runs():
    return {opt: [alone({**BASE, **h, "optimizer": opt}) for h in HYPER] for opt in ("adam", "sgd")}


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_each_member_trains_as_when_alone(lone_runs, opt):
    out = fused([{**BASE, **h, "optimizer": opt} for h in HYPER])
    for i in range(len(HYPER)):
        assert_same_training(out[i], lone_runs[opt][i])
    assert [m["fused_members"] for m, _ in out[0]] == [3, 2]  # member 2 left after epoch 1
    assert out[0][-1][0]["val_accuracy"] > 0.9
    # The model's size and inference time, measured once for the group, in every result.
    for i in range(len(HYPER)):
        assert {m["params_m"] for m, _ in out[i]} == {lone_runs[opt][i][0][0]["params_m"]}
    latencies = {m["latency_ms"] for i in out for m, _ in out[i]}
    assert len(latencies) == 1 and 0 < latencies.pop() < 1e3


def test_member_checkpoints_resume_under_fit_and_fused_alike(lone_runs):
    cfgs = [{**BASE, **h, "optimizer": "adam"} for h in HYPER[:2]]
    runs = lone_runs["adam"][:2]
    # A fused member's epoch-1 checkpoint, continued by fit alone, gives fit's epoch 2...
    first = fused([{**c, "epochs": 1} for c in cfgs])
    assert_same_training(alone(cfgs[0], state=first[0][0][1]), runs[0][1:])
    # ...and lone runs' epoch-1 checkpoints, continued as one fused group, give them too.
    resumed = fused(cfgs, states=[r[0][1] for r in runs])
    for i in range(2):
        assert_same_training(resumed[i], runs[i][1:])


def test_a_member_continued_under_a_new_config_trains_as_fit_continues_it(lone_runs):
    # Population-based training's step: another trial's state, this trial's rates.
    donor = lone_runs["sgd"][1][0][1]  # lr 1e-3, weight decay 0.05, momentum 0.5; epoch 1
    new = [
        {**BASE, "optimizer": "sgd", "lr": 1e-2, "momentum": 0.9, "weight_decay": 0.0},
        {**BASE, "optimizer": "sgd", "lr": 3e-3, "momentum": 0.0, "weight_decay": 1e-2},
    ]
    out = fused(new, states=[donor, donor])
    for i, cfg in enumerate(new):
        assert_same_training(out[i], alone(cfg, state=donor))
        group = out[i][-1][1].optimizers[0]["param_groups"][0]
        assert [group[k] for k in ("lr", "momentum", "weight_decay")] == [
            cfg["lr"],
            cfg["momentum"],
            cfg["weight_decay"],
        ]


def test_member_dropout_rates_are_per_member():
    rates = torch.tensor([0.0, 0.5, 0.9])
    drop = MemberDropout(0.0).train()
    x = torch.ones(20_000)

    def apply(p, x):
        return torch.func.functional_call(drop, {"p": p}, (x,))

    y = torch.vmap(apply, in_dims=(0, None), randomness="different")(rates, x)
    zeros = (y == 0).float().mean(1)
    assert zeros.tolist() == pytest.approx(rates.tolist(), abs=0.02)
    assert y.mean(1).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=0.1)  # rescaled
    assert torch.equal(y[0], x)  # rate 0: the identity, as nn.Dropout(0)

    block = MemberDropBlock(0.0, block_size=3, eps=1e-6).train()
    img = torch.ones(64, 4, 16, 16)

    def apply_block(p, x):
        return torch.func.functional_call(block, {"p": p}, (x,))

    out = torch.vmap(apply_block, in_dims=(0, None), randomness="different")(
        torch.tensor([0.0, 0.2]), img
    )
    assert torch.equal(out[0], img)
    ours = (out[1] == 0).float().mean()
    theirs = (DropBlock2d(0.2, 3)(img) == 0).float().mean()
    assert float(ours) == pytest.approx(float(theirs), abs=0.02) and float(ours) > 0.1


def state_at(epoch):
    """A trial state after ``epoch`` (nothing else in it is read before the epochs are)."""
    rng = torch.get_rng_state()
    return TrialState(epoch=epoch, models=[], optimizers=[], generator=rng, torch_rng=rng)


def test_members_must_share_the_architecture_and_data():
    with pytest.raises(ValueError, match="batch_size"):
        FusedTrainer([{"batch_size": 32}, {"batch_size": 64}])
    with pytest.raises(ValueError, match="different epochs"):
        FusedTrainer([{}, {}], states=[state_at(1), state_at(2)])


def test_a_diverging_member_fails_alone(caplog):
    cfgs = [
        {"model": "mlp", "optimizer": "sgd", "lr": lr, "epochs": 2, "compile": True}
        for lr in (1e6, 0.05)
    ]
    with caplog.at_level(logging.WARNING, logger="raytune_hpo.train"):
        out = fused(cfgs)
    assert isinstance(out[0][0], DivergedError) and len(out[0]) == 1
    assert [m["epoch"] for m, _ in out[1]] == [1, 2] and out[1][-1][0]["val_accuracy"] > 0.8
    assert [r.message for r in caplog.records] == [
        "compile: ignored for fused trials (torch.func.vmap)"
    ]


@pytest.mark.integration
@pytest.mark.parametrize(("lookahead", "sizes"), [(0, [3, 2, 2]), (1, [3, 3, 2])])
def test_tune_trials_share_a_group_and_a_stopped_one_leaves_it(
    ray_session, tmp_path, lookahead, sizes
):
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    from raytune_hpo.train.fused_tune import train_fused

    class StopSlowest(FIFOScheduler):
        """Stops the trial with lr 1e-4 after its first epoch, as ASHA would a bad one."""

        def on_trial_result(self, tune_controller, trial, result):
            if trial.config["lr"] == 1e-4:
                return TrialScheduler.STOP
            return TrialScheduler.CONTINUE

    space = {**BASE, "epochs": 3, "fused": 3, "fused_wait_s": 120.0, "fused_lookahead": lookahead}
    space["lr"] = tune.grid_search([1e-4, 3e-3, 1e-3])
    tuner = tune.Tuner(
        tune.with_resources(train_fused, {"cpu": 0.5}),
        param_space=space,
        tune_config=tune.TuneConfig(
            scheduler=StopSlowest(), metric="val_accuracy", mode="max", reuse_actors=True
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    results = {r.config["lr"]: r for r in tuner.fit()}
    assert not [r.error for r in results.values() if r.error]
    hist = {lr: r.metrics_dataframe for lr, r in results.items()}
    assert list(hist[1e-4]["epoch"]) == [1]
    for lr in (3e-3, 1e-3):
        assert list(hist[lr]["epoch"]) == [1, 2, 3]
        # One group, which went on without the stopped trial: at once in strict lockstep,
        # one epoch later when epoch 2 was trained while epoch 1 was being reported.
        assert list(hist[lr]["fused_members"]) == sizes
    assert hist[3e-3]["val_accuracy"].iloc[-1] > 0.9
    lone = alone({**BASE, "epochs": 3, "lr": 3e-3})
    got = hist[3e-3].iloc[-1]
    for k in ("train_loss", "val_loss", "val_accuracy"):
        assert got[k] == pytest.approx(lone[-1][0][k], rel=1e-4, abs=1e-5)
    # Each trial's checkpoint is fit's format: it resumes the member under fit.
    with results[1e-3].checkpoint.as_directory() as d:
        state = torch.load(f"{d}/state.pt", weights_only=False)
    assert state["epoch"] == 3 and np.isfinite(state["models"][0]["classifier.2.weight"]).all()
    # The group's actor (detached, so that no trial's exit kills it) ends when all have left.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and fused_groups(ray_session):
        time.sleep(0.5)
    assert fused_groups(ray_session) == []


def fused_groups(ray):
    from raytune_hpo.train.fused_tune import NAMESPACE

    named = ray.util.list_named_actors(all_namespaces=True)
    return [a for a in named if a["namespace"] == NAMESPACE]


def test_a_sweep_file_with_fused_trials_trains_them_as_one_group(ray_session, tmp_path):
    import json

    from raytune_hpo.plan.assemble import assemble
    from raytune_hpo.run.sweep import run_sweep
    from raytune_hpo.sweep.spec import SweepSpec

    spec = SweepSpec.from_dict(
        {
            "searcher": {"name": "grid"},
            "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "grid": [1e-3, 3e-3]}},
            "trainable": {"model": "mlp", "epochs": 2, "fused": 2, "fused_wait_s": 120.0},
            "resources": {"cpu": 0.5},
            "max_concurrent": 2,
            "storage_path": str(tmp_path),
        }
    )
    assert assemble(spec).trainable.function().__name__ == "train_fused"
    result = run_sweep(spec)
    assert len(result.table) == 2 and (result.table["status"] == "OK").all()
    members = [
        json.loads(line)["fused_members"]
        for f in tmp_path.glob("*/*/result.json")
        for line in f.read_text().splitlines()
    ]
    assert members and max(members) == 2  # the two trials trained in one group


# ------------------------------------------------------------------ the group's GPU, through Ray
NODE = "ab" * 28  # a node id as Ray writes them


def test_a_gpu_groups_actor_asks_ray_for_its_members_shares():
    """The resource request itself (in process, no Ray): on a GPU the group asks for its
    members' shares of one device and goes wherever that is free; on CPUs for nothing, on
    its members' node. And a sweep's fused trials then ask Tune for no GPU of their own."""
    from raytune_hpo.plan.assemble import assemble
    from raytune_hpo.sweep.spec import SweepSpec
    from raytune_hpo.train.fused_tune import group_options

    quarter = group_options(gpu=0.25, size=4, node=NODE)
    assert quarter["num_gpus"] == 1.0 and quarter["scheduling_strategy"] == "DEFAULT"
    assert "runtime_env" not in quarter  # Ray sets CUDA_VISIBLE_DEVICES, not us
    assert group_options(gpu=0.0625, size=4, node=NODE)["num_gpus"] == 0.25
    assert group_options(gpu=0.5, size=4, node=NODE)["num_gpus"] == 1.0  # one device at most
    cpu = group_options(gpu=0.0, size=4, node=NODE)
    assert cpu["num_gpus"] == 0 and cpu["scheduling_strategy"].node_id == NODE
    spec = SweepSpec.from_dict(
        {
            "trainable": {"model": "mlp", "fused": 4, "device": "cpu"},
            "resources": {"cpu": 0.5, "gpu": 0.25},
            "max_concurrent": 4,
        }
    )
    trial = assemble(spec).tune_trainable()
    assert trial.__name__ == "train_fused"
    assert trial._resources.bundles == [{"CPU": 0.5}]  # the group holds the GPU


LOGICAL_GPU = """
import json, sys, threading, time
import ray
from raytune_hpo.run.sweep import run_sweep
from raytune_hpo.sweep.spec import SweepSpec
from raytune_hpo.train.fused_tune import NAMESPACE

ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
seen, stop = [], threading.Event()

def watch():
    while not stop.is_set():
        free = ray.available_resources().get("GPU", 0.0)
        for a in ray.util.list_named_actors(all_namespaces=True):
            if a["namespace"] == NAMESPACE:
                try:
                    group = ray.get_actor(a["name"], namespace=NAMESPACE)
                    held = ray.get(group.held.remote(), timeout=10)
                    seen.append({"held": held, "free": free})
                except Exception:
                    pass
        time.sleep(0.2)

t = threading.Thread(target=watch, daemon=True)
t.start()
spec = SweepSpec.from_dict({
    "searcher": {"name": "grid"},
    "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "grid": [1e-3, 3e-3]}},
    "trainable": {"model": "mlp", "epochs": 2, "fused": 2, "fused_wait_s": 120.0, "device": "cpu"},
    "resources": {"cpu": 0.5, "gpu": 0.5},
    "max_concurrent": 2,
    "storage_path": sys.argv[1],
})
table = run_sweep(spec).table
stop.set(); t.join()
deadline = time.monotonic() + 60
while ray.available_resources().get("GPU", 0.0) < 1 and time.monotonic() < deadline:
    time.sleep(0.2)
print("RESULT " + json.dumps({
    "ok": int((table["status"] == "OK").sum()),
    "seen": seen,
    "free_after": ray.available_resources().get("GPU", 0.0),
}))
"""


@pytest.mark.integration
def test_a_fused_group_holds_its_gpu_through_rays_resources(tmp_path):
    """On a local Ray of its own with one logical GPU (no CUDA code runs: the members train on
    the CPU): while the group of 2 half-GPU trials trains, Ray has given the group the whole
    GPU (its assigned resources) and has none free; after the sweep the GPU is free again."""
    import os
    import tempfile

    from sweep_procs import script_result

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rg", dir="/tmp")
    script = tmp_path / "logical_gpu.py"
    got = script_result(script, LOGICAL_GPU, str(tmp_path / "runs"), env=env)
    assert got["ok"] == 2
    assert got["seen"], "the group was never seen"
    print(
        f"group's resources while training: {got['seen'][-1]}; GPU free after: {got['free_after']}"
    )
    assert all(s["held"].get("GPU") == 1.0 for s in got["seen"])  # 2 members x 0.5
    assert min(s["free"] for s in got["seen"]) == 0.0
    assert got["free_after"] == 1.0
