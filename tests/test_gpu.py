"""On a GPU (skipped without CUDA): the GPU path learns what the CPU path learns, and trials
with fractional GPUs share one GPU, each training on the GPU Ray gave it."""

import time

import pytest

from raytune_hpo.train.trainable import fit

pytestmark = pytest.mark.gpu


def final_accuracy(device: str) -> float:
    out = []
    cfg = {"model": "tinyvgg", "dataset": "digits", "epochs": 6, "device": device, "seed": 0}
    fit(cfg, report=lambda metrics, state: out.append(metrics))
    return out[-1]["val_accuracy"]


def test_gpu_path_trains_to_the_cpu_accuracy():
    cpu, gpu = final_accuracy("cpu"), final_accuracy("cuda")
    assert gpu > 0.9 and abs(gpu - cpu) < 0.03


@pytest.mark.integration
def test_quarter_gpu_trials_run_four_at_once_on_their_gpu(ray_session, tmp_path):
    import ray

    @ray.remote(num_gpus=0.25, num_cpus=0)
    def where():
        import torch

        from raytune_hpo.train.trainable import _device

        start = time.time()
        x = torch.randn(2048, 2048, device=_device("auto"))
        for _ in range(200):
            x = x @ x.T / 2048
        torch.cuda.synchronize()
        return str(_device("auto")), ray.get_gpu_ids(), start, time.time()

    got = ray.get([where.remote() for _ in range(4)])
    assert all(dev == "cuda" and len(ids) == 1 for dev, ids, _, _ in got)
    assert max(s for *_, s, _ in got) < min(e for *_, e in got)  # all four ran at once

    from raytune_hpo.run import run_sweep
    from raytune_hpo.spec import SweepSpec

    spec = SweepSpec.from_dict(
        {
            "name": "gpu",
            "storage_path": str(tmp_path),
            "num_samples": 4,
            "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
            "trainable": {"model": "tinyvgg", "epochs": 4, "device": "cuda"},
            "resources": {"cpu": 0.5, "gpu": 0.25},
        }
    )
    df = run_sweep(spec).table
    assert (df["status"] == "OK").all() and df["val_accuracy"].max() > 0.9
