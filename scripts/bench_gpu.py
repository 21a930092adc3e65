"""Training throughput (images/s) of the built-in trainable on one device, side by side in one run.

1. ratio: ``raytune_hpo.train.trainable.fit`` against a bare PyTorch loop on the same model
   (TinyVGG), batch, data split and optimizer. Epochs alternate (fit, bare, fit, bare, ...);
   each epoch includes its validation pass; the first of each is warm-up. Reported: the median
   over all adjacent (fit, bare) and (bare, fit) pairs of bare seconds / fit seconds (1.0: fit
   is as fast as the bare loop).
2. options: fit with one speed option changed against fit with the defaults, runs rotated.
3. engine: one fused group of n members (``FusedTrainer``, no Ray) against ``fit`` training
   one model: member-images/s, and the speed-up over training the n one after another.
5. data_parallel: one Ray Train run of the built-in CNN (``train_cnn_per_worker``) on 1, 2
   and all GPUs of the device (CPU: 1 and 2 ranks of one core each), the batch split over the
   ranks: images/s over the epochs after the first, and the seconds to a target validation
   accuracy (``--target``).
4. packed / fused: n real Ray Tune trials sharing the device through fractional resources
   (GPU: 1/n GPU each; CPU: min(1, 2/n) of 2 CPUs), as ``train_cnn`` trials or as one fused
   group (``train_fused``); summed images/s over the time all n run.

    python scripts/bench_gpu.py --out benchmarks/results            # CPU: digits, 1-4 trials
    python scripts/bench_gpu.py --out $OUT --device cuda            # GPU: 3x64x64, 1-16 trials
    python scripts/bench_gpu.py --out /tmp/b --quick                # seconds: no Ray, 2 pairs

OMP_WAIT_POLICY defaults to PASSIVE here: on a CPU shared with other work, spinning OpenMP
threads make a 2-thread torch process 10-20x slower (measured), which is noise, not signal.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from raytune_hpo.sweep.sections import defaults  # noqa: E402
from raytune_hpo.train.data import load_dataset, make_splits, normalised  # noqa: E402
from raytune_hpo.train.models import build_model  # noqa: E402
from raytune_hpo.train.trainable import fit  # noqa: E402

CUDA_DATA = {"dataset": "synthetic", "data": {"n_samples": 8192, "image_size": 64}}
CPU_DATA = {"dataset": "digits", "data": {}}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class BareLoop:
    """The loop a user would write: data normalised once on the device, index slicing,
    forward/backward/step, then one validation pass; nothing else."""

    def __init__(self, cfg: dict[str, Any], device: torch.device) -> None:
        data = load_dataset(cfg["dataset"], seed=cfg["seed"], **cfg["data"]).to(device)
        ((tr, va),) = make_splits(
            data.labels.cpu().numpy(), k_folds=1, val_fraction=0.2, seed=cfg["seed"]
        )
        x, y = normalised(data), data.labels
        self.xtr, self.ytr = x[torch.as_tensor(tr, device=device)], y[tr]
        self.xva, self.yva = x[torch.as_tensor(va, device=device)], y[va]
        torch.manual_seed(cfg["seed"])
        self.model = build_model(
            "tinyvgg", in_shape=data.shape, num_classes=data.num_classes, options={}
        ).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg["lr"])
        self.batch, self.device = cfg["batch_size"], device

    def epoch(self) -> float:
        """Seconds for one epoch and its validation pass."""
        _sync(self.device)
        t0 = time.perf_counter()
        self.model.train()
        perm = torch.randperm(len(self.xtr), device=self.device)
        for i in range(0, len(perm), self.batch):
            idx = perm[i : i + self.batch]
            loss = nn.functional.cross_entropy(self.model(self.xtr[idx]), self.ytr[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        self.model.eval()
        with torch.no_grad():
            acc = (self.model(self.xva).argmax(1) == self.yva).float().mean().item()
        if not acc > 0:
            raise RuntimeError("bare loop did not learn")
        return time.perf_counter() - t0


def ratio(cfg: dict[str, Any], device: torch.device, pairs: int) -> dict[str, Any]:
    """fit's epochs alternating with the bare loop's, in one process."""
    bare = BareLoop(cfg, device)
    fit_s: list[float] = []
    bare_s: list[float] = []
    mark = [0.0]

    def report(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        _sync(device)
        fit_s.append(time.perf_counter() - mark[0])
        bare_s.append(bare.epoch())
        mark[0] = time.perf_counter()

    mark[0] = time.perf_counter()
    fit({**cfg, "epochs": pairs + 1, "device": device.type}, report=report)
    n = len(bare.xtr)
    # Every adjacent pair, (fit k, bare k) and (bare k, fit k + 1): each order counts alike.
    f, b = fit_s[1:], bare_s[1:]
    pair_ratios = [bk / fk for fk, bk in zip(f, b, strict=True)]
    pair_ratios += [bk / fk for bk, fk in zip(b, f[1:], strict=False)]
    return {
        "pairs": len(f),
        "adjacent_ratios": len(pair_ratios),
        "train_images_per_epoch": n,
        "fit_images_per_s": n / statistics.median(fit_s[1:]),
        "bare_images_per_s": n / statistics.median(bare_s[1:]),
        "ratio": statistics.median(pair_ratios),
        "ratio_iqr": [float(q) for q in np.percentile(pair_ratios, [25, 75])],
    }


def options(cfg: dict[str, Any], device: torch.device, variants: dict, rounds: int) -> dict:
    """fit's seconds per epoch with each variant's options against the defaults (epochs 2-3
    of 3-epoch runs), runs rotated so that load drifts hit all alike."""
    names = ["default", *variants]
    times: dict[str, list[float]] = {k: [] for k in names}
    errors: dict[str, str] = {}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if name in errors:
                continue
            stamps: list[float] = []
            run_cfg = {**cfg, **variants.get(name, {}), "epochs": 3, "device": device.type}
            try:
                fit(run_cfg, report=lambda m, s, stamps=stamps: stamps.append(_stamp(device)))
            except Exception as e:  # an option this device cannot run: say so, go on
                errors[name] = f"{type(e).__name__}: {e}"
                continue
            times[name].append((stamps[-1] - stamps[0]) / (len(stamps) - 1))
    base = statistics.median(times["default"])
    out: dict[str, Any] = {}
    for name in names:
        if name in errors:
            out[name] = {"options": variants.get(name, {}), "error": errors[name]}
            continue
        med = statistics.median(times[name])
        out[name] = {
            "options": variants.get(name, {}),
            "s_per_epoch": med,
            "speedup_vs_default": base / med,
        }
    return out


def _tune_throughput(
    trainable, cfg: dict, n: int, resources: dict, storage: str, per_epoch: int
) -> dict[str, Any]:
    """Run ``n`` trials at once; summed images/s over the window in which all ``n`` run."""
    from ray import tune

    arrivals: dict[str, list[tuple[float, int]]] = {}
    group_sizes: set[int] = set()

    class Clock(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            arrivals.setdefault(trial.trial_id, []).append((time.monotonic(), result["epoch"]))
            if "fused_members" in result:
                group_sizes.add(int(result["fused_members"]))

    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space=cfg,
        tune_config=tune.TuneConfig(num_samples=n, max_concurrent_trials=n, reuse_actors=False),
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            callbacks=[Clock()],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )
    grid = tuner.fit()
    errors = [r.error for r in grid if r.error]
    if errors:
        raise RuntimeError(f"{len(errors)} trials failed: {errors[0]}")
    # The window: from the latest trial's first result to the earliest trial's last result.
    start = max(a[0][0] for a in arrivals.values())
    end = min(a[-1][0] for a in arrivals.values())
    if len(arrivals) != n or end <= start:
        return {"trials": n, "images_per_s": None, "note": "the trials did not all run at once"}
    images = 0.0
    for a in arrivals.values():
        t = np.array([s for s, _ in a])
        done = np.array([e for _, e in a], dtype=float) * per_epoch
        images += float(np.interp(end, t, done) - np.interp(start, t, done))
    out = {"trials": n, "images_per_s": images / (end - start), "window_s": end - start}
    if group_sizes:
        out["fused_group_sizes_seen"] = sorted(group_sizes)
    return out


def engine(cfg: dict[str, Any], device: torch.device, counts: list[int], epochs: int) -> dict:
    """In one process, no Ray: ``FusedTrainer`` with n members (member-images/s) against
    ``fit`` training one model, epochs after the first."""
    from raytune_hpo.train.fused import FusedTrainer

    def timed(run) -> float:
        stamps: list[float] = []
        run(stamps)
        return statistics.median(np.diff(stamps))

    def single(stamps):
        fit(
            {**cfg, "epochs": epochs, "device": device.type},
            report=lambda m, s: stamps.append(_stamp(device)),
        )

    def group(n):
        def run(stamps):
            lrs = np.geomspace(3e-4, 3e-3, n)
            trainer = FusedTrainer(
                [{**cfg, "lr": float(lr), "epochs": epochs, "device": device.type} for lr in lrs]
            )
            while trainer.members:
                trainer.train_epoch()
                stamps.append(_stamp(device))

        return run

    n_train = _train_images(cfg)
    one = n_train / timed(single)
    out: dict[str, Any] = {"fit_1_model_images_per_s": one, "counts": counts}
    for n in counts:
        ips = n * n_train / timed(group(n))
        out[str(n)] = {"member_images_per_s": ips, "speedup_vs_fit_one_at_a_time": ips / one}
    return out


def _stamp(device: torch.device) -> float:
    _sync(device)
    return time.perf_counter()


def _train_images(cfg: dict[str, Any]) -> int:
    data = load_dataset(cfg["dataset"], seed=cfg["seed"], **cfg["data"])
    return len(make_splits(data.labels.numpy(), k_folds=1, val_fraction=0.2, seed=0)[0][0])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for gpu-bench-<device>.json")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument(
        "--quick", action="store_true", help="seconds: 2 epoch pairs, one fused group, no Ray"
    )
    ap.add_argument("--compile", action="store_true", help="also time compile: true (slow)")
    ap.add_argument(
        "--counts", help="Tune trial counts, e.g. 1,16 (default: 1,4,8,16 GPU; 1,2,4 CPU)"
    )
    ap.add_argument("--epochs", type=int, help="epochs per Tune trial (default: 8 GPU, 10 CPU)")
    ap.add_argument("--ranks", help="data-parallel rank counts, e.g. 1,2,8 (default: 1,2,all)")
    ap.add_argument("--target", type=float, default=0.9, help="val_accuracy to time (0.9)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    data = CPU_DATA if args.quick or not cuda else CUDA_DATA
    cfg = {**defaults(), **data, "seed": 0, "lr": 1e-3, "batch_size": 32}
    out: dict[str, Any] = {
        "benchmark": "bench_gpu",
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device)
        if cuda
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "quick": args.quick,
        "model": "tinyvgg",
        **data,
    }
    path = Path(args.out) / f"gpu-bench-{device.type}{'-quick' if args.quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)

    def section(key: str, run, into: dict | None = None, label: str = "") -> None:
        """Run one part into ``into[key]`` (default: the top level); a failure is recorded,
        not fatal; the JSON is rewritten after each part, so a run cut short (a device time
        limit) keeps what it measured."""
        t0 = time.perf_counter()
        target = out if into is None else into
        try:
            target[key] = run()
        except Exception as e:  # one option or count failing must not lose the others
            target[key] = {"error": f"{type(e).__name__}: {e}"}
        took = time.perf_counter() - t0
        print(f"[bench_gpu] {label or key}: {took:.0f} s", file=sys.stderr, flush=True)
        path.write_text(json.dumps(out, indent=2) + "\n")

    threads = torch.get_num_threads()
    if not cuda:
        torch.set_num_threads(1)  # a trial with one CPU gets one thread; so does the bare loop
    pairs = 2 if args.quick else (12 if cuda else 30)
    sizes = (32,) if args.quick else (32, 256)
    section(
        "ratio", lambda: {f"bs{b}": ratio({**cfg, "batch_size": b}, device, pairs) for b in sizes}
    )
    out["trainable_vs_bare_ratio_bs32"] = _ok(out["ratio"]).get("bs32", {}).get("ratio")
    if not args.quick:
        variants = _variants(cuda, args.compile)
        section("options", lambda: options(cfg, device, variants, 4 if cuda else 6))
    counts = [2] if args.quick else ([4, 8, 16] if cuda else [2, 4])
    section("engine", lambda: engine(cfg, device, counts, epochs=2 if args.quick else 4))
    torch.set_num_threads(threads)
    tune_section(args, cfg, cuda, out, section)
    data_parallel_section(args, cfg, cuda, out, section)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print_table(out)
    print(f"wrote {path}")
    return out


def _variants(cuda: bool, compile_: bool) -> dict[str, dict[str, Any]]:
    if cuda:
        variants: dict[str, dict[str, Any]] = {
            "amp=off": {"amp": "off"},
            "cuda_graphs=false": {"cuda_graphs": False},
            "channels_last=true": {"channels_last": True},
            "channels_last=false": {"channels_last": False},
        }
    else:
        variants = {"amp=bf16": {"amp": "bf16"}, "channels_last=true": {"channels_last": True}}
    if compile_:
        variants["compile=true"] = {"compile": True}
    return variants


def tune_section(args, cfg: dict[str, Any], cuda: bool, out: dict, section) -> None:
    """Packed and fused trials through real Ray Tune runs (not with --quick)."""
    counts = [1, 4, 8, 16] if cuda else [1, 2, 4]
    if args.counts:
        counts = [int(c) for c in args.counts.split(",")]
    counts = [] if args.quick else counts
    epochs = args.epochs or (8 if cuda else 10)
    out["packed"] = {"counts": counts, "epochs": epochs, "runs": {}}
    out["fused"] = {"counts": counts, "epochs": epochs, "runs": {}}
    if counts:
        import ray

        from raytune_hpo.train.entry import fused_members
        from raytune_hpo.train.trainable import train_cnn

        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        ncpu = (os.cpu_count() or 2) if cuda else 2
        if not ray.is_initialized():
            ray.init(
                num_cpus=ncpu,
                num_gpus=1 if cuda else 0,
                include_dashboard=False,
                log_to_driver=False,
                _temp_dir=tempfile.mkdtemp(prefix="bench-gpu-ray-"),
            )
        n_train = _train_images(cfg)
        trial_cfg = {**cfg, "epochs": epochs, "device": "cuda" if cuda else "cpu"}
        storage = tempfile.mkdtemp(prefix="bench-gpu-tune-")
        for n in counts:
            # One GPU shared by n trials, or the CPU's 2 cores (n = 1: one core, one thread).
            res = {"cpu": min(1.0, ncpu / n), "gpu": 1 / n if cuda else 0}
            fcfg = {**trial_cfg, "fused": n, "fused_wait_s": 60.0}
            # Fused: the group holds the members' GPU shares through Ray, the trials none.
            fused = (fused_members(res["gpu"]), fcfg, {**res, "gpu": 0})
            for kind, (fn, c, r) in (("packed", (train_cnn, trial_cfg, res)), ("fused", fused)):

                def run(fn=fn, c=c, n=n, res=r):
                    return _tune_throughput(fn, c, n, res, storage, n_train)

                section(str(n), run, into=out[kind]["runs"], label=f"Tune {kind} {n}")
    packed, fused = out["packed"]["runs"], out["fused"]["runs"]

    def ips(runs: dict, n: str) -> float | None:
        return runs.get(n, {}).get("images_per_s")

    out["packed16_images_per_s"] = ips(packed, "16")
    out["fused16_images_per_s"] = ips(fused, "16")
    out["fused_vs_packed"] = {
        n: ips(fused, n) / ips(packed, n) for n in packed if ips(packed, n) and ips(fused, n)
    }


def _rank_counts(args, cuda: bool) -> list[int]:
    if args.quick:
        return []
    if args.ranks:
        return [int(c) for c in args.ranks.split(",")]
    every = torch.cuda.device_count() if cuda else 2
    return sorted({1, min(2, every), every})


def data_parallel(cfg: dict[str, Any], ranks: int, cuda: bool, target: float) -> dict:
    """One Ray Train run on ``ranks`` ranks: images/s after the first epoch, time to target."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from raytune_hpo.train.entry import train_cnn_per_worker

    per_rank = {"CPU": 1.0, "GPU": 1.0} if cuda else {"CPU": 1.0}
    t0 = time.perf_counter()
    result = TorchTrainer(
        train_cnn_per_worker,
        train_loop_config=cfg,
        scaling_config=ScalingConfig(
            num_workers=ranks, use_gpu=cuda, resources_per_worker=per_rank
        ),
        run_config=RunConfig(
            name=f"dp{ranks}", storage_path=tempfile.mkdtemp(prefix="bench-gpu-dp-")
        ),
    ).fit()
    wall = time.perf_counter() - t0
    history = sorted((m for _, m in result.best_checkpoints), key=lambda m: m["epoch"])
    first, last = history[0], history[-1]
    epochs = last["epoch"] - first["epoch"]
    reached = [m["elapsed_s"] for m in history if m["val_accuracy"] >= target]
    return {
        "ranks": ranks,
        "images_per_s": epochs * _train_images(cfg) / (last["elapsed_s"] - first["elapsed_s"])
        if epochs
        else None,
        "seconds_to_target": reached[0] if reached else None,
        "val_accuracy": last["val_accuracy"],
        "wall_s": wall,
    }


def data_parallel_section(args, cfg: dict[str, Any], cuda: bool, out: dict, section) -> None:
    """Data-parallel trials: 1 vs 2 vs all GPUs (not with --quick)."""
    counts = _rank_counts(args, cuda)
    epochs = args.epochs or (8 if cuda else 10)
    out["data_parallel"] = {"counts": counts, "epochs": epochs, "target": args.target, "runs": {}}
    if not counts:
        return
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=max(counts) if not cuda else (os.cpu_count() or 2),
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=tempfile.mkdtemp(prefix="bench-gpu-ray-"),
        )
    dp_cfg = {**cfg, "epochs": epochs, "device": "cuda" if cuda else "cpu"}
    for n in counts:

        def run(n=n):
            return data_parallel(dp_cfg, n, cuda, args.target)

        section(str(n), run, into=out["data_parallel"]["runs"], label=f"data-parallel {n}")


def print_table(out: dict[str, Any]) -> None:
    print(f"bench_gpu on {out['device_name']} ({out['dataset']}, TinyVGG)")
    rows: list[tuple[str, Any, Any]] = []
    for key, r in _ok(out.get("ratio")).items():
        rows.append((f"bare loop {key}", r["bare_images_per_s"], None))
        rows.append((f"fit {key} (ratio: fit/bare)", r["fit_images_per_s"], r["ratio"]))
    for name, r in _ok(out.get("options")).items():
        rows.append((f"fit, {name} (vs defaults)", None, r.get("speedup_vs_default", "error")))
    eng = _ok(out.get("engine"))
    if eng:
        rows.append(("engine: fit, 1 model", eng["fit_1_model_images_per_s"], None))
        for n in eng["counts"]:
            r = eng[str(n)]
            rows.append((f"engine: fused {n} (vs 1 at a time)", r["member_images_per_s"],
                         r["speedup_vs_fit_one_at_a_time"]))  # fmt: skip
    for kind in ("packed", "fused"):
        for n, r in out[kind]["runs"].items():
            rel = out["fused_vs_packed"].get(n) if kind == "fused" else None
            rows.append((f"Tune: {kind} {n} trials, sum", r.get("images_per_s", "error"), rel))
    for n, r in (out.get("data_parallel") or {}).get("runs", {}).items():
        ips, to_target = r.get("images_per_s", "error"), r.get("seconds_to_target")
        rows.append((f"data-parallel: {n} ranks (ratio: s to target)", ips, to_target))
    for key in ("ratio", "options", "engine"):
        if "error" in (out.get(key) or {}):
            rows.append((f"{key}: {out[key]['error'][:60]}", "error", None))
    print(f"{'measure':40s} {'images/s':>10s} {'ratio':>7s}")
    for name, ips, rel in rows:
        ips_s = f"{ips:10.0f}" if isinstance(ips, float) else f"{ips or '-':>10}"
        rel_s = f"{rel:7.3f}" if isinstance(rel, float) else f"{rel or '':>7}"
        print(f"{name:40s} {ips_s} {rel_s}")


def _ok(part: Any) -> dict:
    """A section's results, or {} where it failed or did not run."""
    return part if isinstance(part, dict) and "error" not in part else {}


if __name__ == "__main__":
    main()
