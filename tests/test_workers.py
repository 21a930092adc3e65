"""``workers:``: data-parallel trials (Ray Train V2 under Tune) on CPU with gloo, 2 ranks of
half a CPU each on the shared 2-CPU Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from raytune_hpo.errors import UserError
from raytune_hpo.plan.assemble import assemble
from raytune_hpo.run import resources
from raytune_hpo.sweep.spec import SpecError, SweepSpec

HERE = Path(__file__).parent
REPO = HERE.parent
CNN = {"model": "mlp", "dataset": "digits", "epochs": 1, "device": "cpu", "batch_size": 64}
TWO = {"count": 2, "cpu": 0.5}


def spec_of(**fields):
    data = {"trainable": dict(CNN), "workers": dict(TWO), "max_concurrent": 1, **fields}
    return SweepSpec.from_dict(data)


# ------------------------------------------------------------------ the field and its refusals
def test_workers_are_read_and_a_bad_value_names_its_field():
    spec = spec_of()
    assert (spec.workers.count, spec.workers.cpu, spec.workers.placement) == (2, 0.5, "PACK")
    for bad, field in (
        ({"count": 0}, "workers.count"),
        ({"count": 2, "placement": "ANYWHERE"}, "workers.placement"),
        ({"count": 2, "gpu": 1.5}, "workers.gpu"),
        ({"count": 2, "cores": 2}, "workers.cores"),
    ):
        with pytest.raises(SpecError, match=field.replace(".", r"\.")):
            spec_of(workers=bad)


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"trainable": {**CNN, "k_folds": 3}}, "trainable.k_folds", "k-fold"),
        ({"trainable": {**CNN, "fused": 2}}, "trainable.fused", "fused trials"),
        ({"resources": {"cpu": 2}}, "resources", "leave resources out"),
        ({"workers": {**TWO, "backend": "nccl"}}, "workers.backend", "GPU on every rank"),
        ({"workers": None, "resources": {"gpu": 2}}, "resources.gpu", "workers:"),
    ],
)
def test_what_cannot_run_data_parallel_is_refused_in_one_line(fields, field, says):
    with pytest.raises(SpecError) as e:
        assemble(spec_of(**fields))
    line = str(e.value)
    assert "\n" not in line and field in line and says in line


def test_without_max_concurrent_a_warning_says_the_trainers_start_at_once():
    plan = assemble(spec_of(max_concurrent=None))
    assert any("max_concurrent" in w and "workers" in w for w in plan.warnings)
    assert not assemble(spec_of()).warnings


def test_a_trial_counts_its_ranks_against_this_machine_and_the_cluster_node_types():
    four = resources.demand(spec_of(workers={"count": 4, "cpu": 1}))
    with pytest.raises(UserError, match=r"workers\.cpu.*4 ranks asks for 4\.01 CPU"):
        resources.check_local(four, num_cpus=2)
    resources.check_local(resources.demand(spec_of()), num_cpus=2)  # 2 x 0.5 fits
    # The trial's own process counts too: 2 ranks of a whole CPU leave it none of 2.
    whole = resources.demand(spec_of(workers={"count": 2, "cpu": 1}))
    with pytest.raises(UserError, match=r"workers\.cpu.*asks for 2\.01 CPU"):
        resources.check_local(whole, num_cpus=2)
    types = {"head": {"CPU": 2.0, "GPU": 0.0}, "gpu": {"CPU": 8.0, "GPU": 1.0}}
    per_gpu = spec_of(workers={"count": 2, "gpu": 1, "cpu": 4})
    resources.check_node_types(resources.demand(per_gpu), types)  # one rank per GPU node
    packed = spec_of(workers={"count": 2, "gpu": 1, "cpu": 4, "placement": "STRICT_PACK"})
    with pytest.raises(UserError, match=r"workers\.gpu"):
        resources.check_node_types(resources.demand(packed), types)  # 2 GPUs on one node


def test_the_watchs_pending_message_counts_every_rank():
    from raytune_hpo.run.watch import Limits, pending_message

    limits = Limits.of(spec_of(workers={"count": 4, "cpu": 0.5, "gpu": 1, "memory_gb": 2}))
    assert (limits.resources, limits.ranks) == ({"CPU": 2, "GPU": 4, "memory GB": 8}, 4)
    line = pending_message(limits, 60)
    assert "(CPU 2, GPU 4, memory GB 8 in all, over 4 ranks)" in line, line
    plain = Limits.of(SweepSpec.from_dict({"trainable": dict(CNN), "resources": {"cpu": 1.5}}))
    assert (plain.resources["CPU"], plain.ranks) == (1.5, 1)
    assert "(CPU 1.5)" in pending_message(plain, 60)


def test_the_driver_imports_no_torch_to_hand_tune_a_data_parallel_trial():
    code = (
        "import sys\n"
        "from raytune_hpo.plan.assemble import assemble\n"
        "from raytune_hpo.sweep.spec import SweepSpec\n"
        f"spec = SweepSpec.from_dict({{'trainable': {CNN!r}, 'workers': {TWO!r}}})\n"
        "assemble(spec).tune_trainable()\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_rank_shards_are_disjoint_equal_and_cover_the_index():
    import torch

    from raytune_hpo.train.data_parallel import shard

    index = torch.arange(101) * 3
    parts = [shard(index, r, 2) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 51  # the same number of steps on every rank
    seen = torch.cat(parts).tolist()
    assert set(seen) == set(index.tolist())
    assert len(seen) - len(set(seen)) == 1  # the one padding entry


# ------------------------------------------------------------------ on Ray
def _bundles_while(stop: threading.Event, seen: list) -> None:
    import ray
    from ray.util import placement_group_table

    while not stop.is_set():
        for pg in placement_group_table().values():
            if pg["state"] == "CREATED":
                seen.append(tuple(sorted(b.get("CPU", 0) for b in pg["bundles"].values())))
        seen.append(("free", ray.available_resources().get("CPU", 0.0)))
        time.sleep(0.5)


@pytest.mark.integration
def test_asha_stops_a_two_rank_user_loop_and_tune_records_rank_0_once_per_step(
    ray_session, tmp_path
):
    from raytune_hpo.run.sweep import run_sweep

    spec = SweepSpec.from_dict(
        {
            "name": "dp-asha",
            "metric": "score",
            "mode": "max",
            "space": {"x": {"type": "categorical", "choices": [1.0, 0.0]}},
            "searcher": {"name": "grid"},
            "scheduler": {"name": "asha", "grace_period": 1, "max_t": 3, "reduction_factor": 2},
            "max_concurrent": 1,
            "trainable": {"function": "dp_loop.py:train_loop", "config": {"steps": 3}},
            "workers": TWO,
            "storage_path": str(tmp_path),
            "code_dir": str(HERE),
        }
    )
    seen: list = []
    stop = threading.Event()
    watcher = threading.Thread(target=_bundles_while, args=(stop, seen), daemon=True)
    watcher.start()
    try:
        table = run_sweep(spec).table
    finally:
        stop.set()
        watcher.join()
    assert (0.5, 0.5) in seen  # the ranks' own placement group: 2 x 0.5 CPU
    by_x = {row["config.x"]: row for _, row in table.iterrows()}
    # one result per step (not one per rank), and it is rank 0's (rank 1's is 1000 higher)
    assert (by_x[1.0]["epochs"], by_x[1.0]["score"]) == (3, 3.0)
    assert by_x[0.0]["epochs"] == 1  # stopped by ASHA at its first rung
    deadline = time.monotonic() + 20
    while ray_session.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_session.available_resources().get("CPU", 0) == 2  # every rank's CPU is back


def _fit_cnn(ranks: int, batch_size: int, storage: Path) -> dict:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from raytune_hpo.train.entry import train_cnn_per_worker

    trainer = TorchTrainer(
        train_cnn_per_worker,
        train_loop_config={**CNN, "epochs": 2, "batch_size": batch_size, "lr": 3e-3},
        scaling_config=ScalingConfig(num_workers=ranks, resources_per_worker={"CPU": 0.5}),
        run_config=RunConfig(name=f"r{ranks}", storage_path=str(storage)),
    )
    result = trainer.fit()
    from raytune_hpo.train.checkpoint import load_checkpoint

    assert load_checkpoint(result.checkpoint).epoch == 2  # rank 0's, in the one format
    return result.metrics


@pytest.mark.integration
def test_two_ranks_with_half_the_batch_match_one_rank_with_the_whole_batch(ray_session, tmp_path):
    one = _fit_cnn(1, 64, tmp_path)
    two = _fit_cnn(2, 64, tmp_path)  # 32 a step on each rank, gradients averaged
    assert two["ranks"] == 2 and one["ranks"] == 1
    print(f"val_accuracy: 1 rank {one['val_accuracy']:.4f}, 2 ranks {two['val_accuracy']:.4f}")
    assert one["val_accuracy"] > 0.85
    assert abs(one["val_accuracy"] - two["val_accuracy"]) <= 0.04


# ------------------------------------------------------------------ population-based training
def test_pbt_and_pb2_are_taken_with_workers():
    for name in ("pbt", "pb2"):
        plan = assemble(
            spec_of(
                scheduler={"name": name, "perturbation_interval": 1},
                space={"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
            )
        )
        assert plan.scheduler_name == name


@pytest.mark.integration
def test_the_cnn_continues_every_rank_from_a_checkpoint_it_is_started_from(ray_session, tmp_path):
    """What an exploited CNN trial does: its 2 ranks start a new Train run from another run's
    checkpoint (``rank_loop(start_from=...)``) under a new learning rate, and train only the
    epochs after it (a rank that started afresh would train both, and the ranks' collectives
    would not match)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from raytune_hpo.train.checkpoint import load_checkpoint
    from raytune_hpo.train.distributed import rank_loop
    from raytune_hpo.train.entry import train_cnn_per_worker

    config = {**CNN, "epochs": 1, "lr": 3e-3}
    donor = TorchTrainer(
        train_cnn_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
        run_config=RunConfig(name="donor", storage_path=str(tmp_path)),
    ).fit()
    copied = donor.checkpoint
    trainer = TorchTrainer(
        rank_loop(train_cnn_per_worker, None, start_from=copied),
        train_loop_config={**config, "epochs": 2, "lr": 1e-3},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        run_config=RunConfig(name="exploited", storage_path=str(tmp_path)),
    )
    result = trainer.fit()
    assert list(result.metrics_dataframe["epoch"]) == [2]  # epoch 1 came with the checkpoint
    assert result.metrics["ranks"] == 2 and result.metrics["val_accuracy"] > 0.85
    assert load_checkpoint(result.checkpoint).epoch == 2
    print(
        f"donor val_accuracy {donor.metrics['val_accuracy']:.4f} after epoch 1; continued on 2 "
        f"ranks: {result.metrics['val_accuracy']:.4f} after epoch 2"
    )


def _population_spec(tmp_path: Path, scheduler: str, source: str) -> SweepSpec:
    return SweepSpec.from_dict(
        {
            "name": f"dp-{scheduler}",
            "metric": "score",
            "mode": "max",
            "seed": 3,
            "num_samples": 2,
            "space": {
                "lr": {"type": "float", "low": 0.1, "high": 1.0},
                "init": {"type": "float", "low": 0.0, "high": 10.0},
            },
            "scheduler": {"name": scheduler, "perturbation_interval": 2, "quantile_fraction": 0.5},
            "max_concurrent": 2,  # the population lives at once: 2 x (2 x 0.25 CPU)
            "trainable": {
                "function": "dp_pbt_loop.py:train_loop",
                "config": {
                    "steps": 4,
                    "cap": 30,
                    "until": f"{tmp_path}/**/pbt_schedule.jsonl",
                    "source": source,
                },
            },
            "workers": {"count": 2, "cpu": 0.25},
            "storage_path": str(tmp_path),
            "code_dir": str(HERE),
        }
    )


@pytest.mark.integration
@pytest.mark.parametrize(("scheduler", "source"), [("pbt", "state"), ("pb2", "ray")])
def test_an_exploit_continues_every_rank_from_the_donors_weights(
    ray_session, tmp_path, scheduler, source
):
    """``source``: the loop restores through raytune_hpo.restore_state, or Ray's own
    ray.train.get_checkpoint()."""
    from raytune_hpo.results.live import read_sweep
    from raytune_hpo.run.sweep import run_sweep

    result = run_sweep(_population_spec(tmp_path, scheduler, source))
    assert sorted(result.table["status"].unique()) == ["OK"]
    record = read_sweep(result.path)
    history, schedule = record.history, record.schedule
    assert len(schedule) >= 1, "PBT never exploited"
    # every rank holds the same weights at every step, and restored the same ones
    assert (history["sum_r0"] == history["sum_r1"]).all()
    assert (history["restored_r0"] == history["restored_r1"]).all()
    for _, exploit in schedule.iterrows():
        donor = history[
            (history["trial_id"] == exploit["copied"])
            & (history["training_iteration"] == exploit["copied_at"])
        ]
        donor_sum = float(donor["sum_r0"].iloc[0])
        after = history[
            (history["trial_id"] == exploit["trial_id"])
            & (history["step"] == exploit["copied_at"] + 1)
            & (history["restored_r0"] >= 0)
        ]
        print(
            f"{scheduler}: {exploit['trial_id']} copied {exploit['copied']} at step "
            f"{exploit['copied_at']}: donor checksum {donor_sum:.6f}, restored "
            f"{after[['restored_r0', 'restored_r1']].values.tolist()}"
        )
        assert donor_sum in set(after["restored_r0"]), (donor_sum, after)


# ------------------------------------------------------------------ ranks that never fit
NEVER_FITS = """
import json, sys
import ray
from ray.util.placement_group import placement_group
from raytune_hpo.run.sweep import run_sweep
from raytune_hpo.sweep.spec import SweepSpec

ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
other = placement_group([{"CPU": 1.5}])  # another job holds most of the machine
ray.get(other.ready())
spec = SweepSpec.from_dict({
    "name": "never-fits", "metric": "score", "mode": "max", "num_samples": 1,
    "space": {"x": {"type": "categorical", "choices": [1.0]}},
    "trainable": {"function": "dp_loop.py:train_loop", "config": {"steps": 2}},
    "workers": {"count": 2, "cpu": 0.5}, "max_concurrent": 1, "pending_timeout_s": 10,
    "storage_path": sys.argv[1], "code_dir": sys.argv[2],
})
table = run_sweep(spec).table
print("RESULT " + json.dumps(table[["status", "error"]].to_dict("records")))
"""


@pytest.mark.integration
def test_ranks_that_find_no_room_fail_their_trial_in_one_line(tmp_path):
    """On a local Ray of its own (Ray Train's start timeout lowered to 3 s through its
    environment variable): 2 ranks of half a CPU pass the check before Ray starts, but another
    job holds 1.5 of the 2 CPUs; instead of Train retrying for ever, the trial fails once
    pending_timeout_s has passed, with one line naming workers and what its ranks ask."""
    from sweep_procs import script_result

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S="3", PYTHONPATH=str(REPO))
    script = tmp_path / "never_fits.py"
    (row,) = script_result(script, NEVER_FITS, str(tmp_path / "runs"), str(HERE), env=env)
    print(f"the trial's line: {row['error']}")
    assert row["status"] == "ERROR"
    assert "RanksNeverPlaced" in row["error"] and "2 ranks (CPU 0.5 each" in row["error"]
    assert "pending_timeout_s 10 s" in row["error"]
