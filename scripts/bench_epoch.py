"""Per-epoch time of our trainable next to a bare PyTorch loop, side by side in one run.

Same model (TinyVGG), data (digits, 80/20 split), batch size and optimizer. Three variants,
interleaved over repetitions so machine noise hits all of them alike:

- bare: pre-normalised tensors, index slicing, forward/backward/step, then validation;
- fit: ``raytune_hpo.train.trainable.fit`` with a checkpoint written each epoch, as in Tune;
- tune: one real Ray Tune trial of ``train_cnn`` (``time_this_iter_s``), unless ``--no-tune``.

Writes JSON (``--out``) and prints a table of median seconds per epoch and ratios to bare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import torch
from torch import nn

from raytune_hpo.train import checkpoint
from raytune_hpo.train.data import load_dataset, make_splits
from raytune_hpo.train.models import build_model
from raytune_hpo.train.trainable import fit


def bare_epochs(epochs: int, batch_size: int, lr: float, seed: int) -> list[float]:
    data = load_dataset("digits")
    ((tr, va),) = make_splits(data.labels.numpy(), k_folds=1, val_fraction=0.2, seed=seed)
    x = data.images.float() / 255.0
    x = (x - x.mean()) / x.std()
    y = data.labels
    xtr, ytr, xva, yva = x[tr], y[tr], x[va], y[va]
    torch.manual_seed(seed)
    model = build_model("tinyvgg", in_shape=data.shape, num_classes=10, options={"dropout": 0.3})
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xva).argmax(1) == yva).float().mean().item()
        times.append(time.perf_counter() - t0)
    assert acc > 0.5, "bare loop failed to learn"
    return times


def fit_epochs(epochs: int, batch_size: int, lr: float, seed: int) -> list[float]:
    times: list[float] = []
    last = [time.perf_counter()]

    def report(metrics, state):
        with tempfile.TemporaryDirectory() as d:
            checkpoint.save(state, d)
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    cfg = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "device": "cpu"}
    load_dataset("digits")  # loaded once per process, as in a reused actor
    last[0] = time.perf_counter()
    fit(cfg, report=report)
    return times


def tune_epochs(epochs: int, batch_size: int, lr: float, seed: int, storage: str) -> list[float]:
    from ray import tune

    from raytune_hpo.train.trainable import train_cnn

    cfg = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "device": "cpu"}
    tuner = tune.Tuner(
        tune.with_resources(train_cnn, {"cpu": 1}),
        param_space=cfg,
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    result = tuner.fit()[0]
    return list(result.metrics_dataframe["time_this_iter_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a trial gets 1 CPU)")
    ap.add_argument("--no-tune", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/epoch-cpu.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lr, samples = 1e-3, {"bare": [], "fit": [], "tune": []}
    storage = tempfile.mkdtemp(prefix="bench-epoch-")
    if not args.no_tune:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs = {
        "bare": lambda rep: bare_epochs(args.epochs, args.batch_size, lr, rep),
        "fit": lambda rep: fit_epochs(args.epochs, args.batch_size, lr, rep),
    }
    if not args.no_tune:
        runs["tune"] = lambda rep: tune_epochs(args.epochs, args.batch_size, lr, rep, storage)
    order = list(runs)
    for rep in range(args.repeats):
        # Rotate the order each repeat so drifts in machine load hit every variant alike;
        # skip each run's first epoch (warm-up).
        for name in order[rep % len(order) :] + order[: rep % len(order)]:
            samples[name] += runs[name](rep)[1:]
    med = {k: statistics.median(v) for k, v in samples.items() if v}
    out = {
        "benchmark": "bench_epoch",
        "model": "tinyvgg",
        "dataset": "digits",
        "batch_size": args.batch_size,
        "torch_threads": args.threads,
        "epochs_measured": {k: len(v) for k, v in samples.items() if v},
        "median_s_per_epoch": med,
        "ratio_to_bare": {k: v / med["bare"] for k, v in med.items()},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"{'variant':8s} {'s/epoch':>9s} {'ratio to bare':>14s}")
    for k, v in med.items():
        print(f"{k:8s} {v:9.4f} {v / med['bare']:14.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
