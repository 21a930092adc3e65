"""Speed options of the trainable: on the CPU, what can run there (options accepted, notices
for CUDA-only ones, bf16 autocast, channels_last, torch.compile through dynamo); on a GPU
(tests marked ``gpu``, skipped without CUDA), the GPU path learns what the CPU path learns,
CUDA graphs train like eager steps, fused trials match lone ones, and trials with fractional
GPUs share one GPU."""

import copy
import logging
import time

import pytest
import torch

from raytune_hpo.train.perf import GRAPH_MAX_BATCH, resolve_options
from raytune_hpo.train.trainable import fit

FAST = {"model": "tinyvgg", "epochs": 1, "lr": 3e-3}


def untimed(metrics):
    """A result without its measured inference time (which no two runs share)."""
    return {k: v for k, v in metrics.items() if k != "latency_ms"}


def run(config, state=None):
    out = []
    fit(config, report=lambda m, s: out.append((m, copy.deepcopy(s))), state=state)
    return out


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("amp", "fp16", "auto, bf16, off"),
        ("channels_last", "yes", "auto, true, false"),
        ("cuda_graphs", 1, "auto, true, false"),
        ("compile", "auto", "true, false"),
    ],
)
def test_bad_option_values_name_the_key_and_the_choices(key, value, allowed):
    with pytest.raises(ValueError, match=f"^{key}: .* allowed: {allowed}$"):
        resolve_options({key: value}, torch.device("cpu"))


def test_auto_on_the_cpu_is_plain_fp32_eager_and_silent():
    opts, notices = resolve_options({}, torch.device("cpu"))
    assert (opts.amp, opts.channels_last, opts.compile_mode, opts.cuda_graphs) == (
        None,
        False,
        None,
        False,
    )
    assert notices == []


def test_cuda_rules_pick_graphs_for_small_batches_only():
    cuda = torch.device("cuda")  # resolving needs no GPU; bf16 support is asked only there
    small, _ = resolve_options({"batch_size": GRAPH_MAX_BATCH, "amp": "off"}, cuda)
    large, _ = resolve_options({"batch_size": GRAPH_MAX_BATCH + 1, "amp": "off"}, cuda)
    compiled, _ = resolve_options({"compile": True, "amp": "off"}, cuda)
    assert small.cuda_graphs and not large.cuda_graphs
    assert not compiled.cuda_graphs and compiled.compile_mode == "reduce-overhead"
    mlp, _ = resolve_options({"model": "mlp", "channels_last": True}, cuda)
    assert not mlp.channels_last  # no convolutions to lay out


def test_cuda_only_options_on_the_cpu_are_ignored_with_one_notice(caplog, one_thread):
    cfg = {**FAST, "model": "mlp", "cuda_graphs": True, "device": "cpu"}
    with caplog.at_level(logging.WARNING, logger="raytune_hpo.train"):
        a = run({**cfg, "epochs": 2})
    assert [r.getMessage() for r in caplog.records] == ["cuda_graphs: ignored on cpu (CUDA only)"]
    b = run({**cfg, "epochs": 2, "cuda_graphs": False})
    assert [untimed(m) for m, _ in a] == [untimed(m) for m, _ in b]  # ignored: the same training


def test_bf16_autocast_on_the_cpu_trains(one_thread):
    (m, state), *_ = run({**FAST, "amp": "bf16", "model": "mlp", "device": "cpu"})
    assert m["val_accuracy"] > 0.8
    assert all(v.dtype == torch.float32 for v in state.models[0].values())  # fp32 weights
    (plain, _), *_ = run({**FAST, "amp": "off", "model": "mlp", "device": "cpu"})
    assert m["train_loss"] != plain["train_loss"]  # autocast did act


def test_channels_last_on_the_cpu_trains_like_the_default_layout(one_thread):
    (a, _), *_ = run({**FAST, "channels_last": True, "device": "cpu"})
    (b, _), *_ = run({**FAST, "channels_last": False, "device": "cpu"})
    assert a["val_accuracy"] > 0.8
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)


def test_compile_goes_through_torch_compile(monkeypatch, one_thread):
    # Inductor compiles C++ for minutes on this 2-core CPU (measured: ~2 min for TinyVGG), so
    # the test keeps dynamo's graph capture and runs the captured graphs eagerly.
    calls = []
    real = torch.compile

    def eager_compile(model, **kw):
        calls.append(kw)
        return real(model, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    torch._dynamo.reset()
    (m, state), *_ = run({**FAST, "model": "mlp", "compile": True, "device": "cpu"})
    assert calls == [{"mode": "default"}]
    assert m["val_accuracy"] > 0.8
    assert not any(k.startswith("_orig_mod") for k in state.models[0])  # plain checkpoint


# --- on a GPU ---------------------------------------------------------------------------


def final_accuracy(device: str, **options) -> float:
    out = run({"model": "tinyvgg", "dataset": "digits", "epochs": 6, "device": device, **options})
    return out[-1][0]["val_accuracy"]


@pytest.mark.gpu
def test_gpu_path_trains_to_the_cpu_accuracy():
    cpu, gpu = final_accuracy("cpu"), final_accuracy("cuda")  # GPU: auto (bf16, graphs)
    assert gpu > 0.9 and abs(gpu - cpu) < 0.03


@pytest.mark.gpu
def test_cuda_graphs_train_like_eager_steps():
    cfg = {**FAST, "epochs": 3, "device": "cuda", "amp": "off", "dropout": 0.0, "dropblock": 0.0}
    graphed, eager = run({**cfg, "cuda_graphs": True}), run({**cfg, "cuda_graphs": False})
    for (a, _), (b, _) in zip(graphed, eager, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=0.01)
    resumed = run({**cfg, "cuda_graphs": True}, state=graphed[0][1])  # checkpoint of a graph
    assert resumed[-1][0]["val_accuracy"] == pytest.approx(graphed[-1][0]["val_accuracy"], abs=0.02)


@pytest.mark.gpu
def test_fused_members_on_the_gpu_match_lone_runs():
    from raytune_hpo.train.fused import FusedTrainer

    base = {"epochs": 2, "dropout": 0.0, "dropblock": 0.0, "device": "cuda", "amp": "off"}
    base |= {"dataset": "synthetic", "data": {"n_samples": 800, "image_size": 8}}
    cfgs = [{**base, "lr": lr} for lr in (1e-3, 3e-3)]
    for graphs in (False, True):
        trainer = FusedTrainer([{**c, "cuda_graphs": graphs} for c in cfgs])
        got = [trainer.train_epoch() for _ in range(2)][-1]
        for i, c in enumerate(cfgs):
            lone = run({**c, "cuda_graphs": graphs})[-1][0]
            assert got[i][0]["train_loss"] == pytest.approx(lone["train_loss"], rel=1e-3)


@pytest.mark.gpu
@pytest.mark.integration
def test_quarter_gpu_trials_run_four_at_once_on_their_gpu(ray_session, tmp_path):
    import ray

    @ray.remote(num_gpus=0.25, num_cpus=0)
    def where():
        import torch

        from raytune_hpo.train.trainable import resolve_device

        start = time.time()
        x = torch.randn(2048, 2048, device=resolve_device("auto"))
        for _ in range(200):
            x = x @ x.T / 2048
        torch.cuda.synchronize()
        return str(resolve_device("auto")), ray.get_gpu_ids(), start, time.time()

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
