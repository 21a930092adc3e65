"""Speed options of the trainable: on the CPU, what can run there (options accepted, notices
for CUDA-only ones, bf16 autocast, channels_last, torch.compile through dynamo), and a fast
path that fails (a step, a compile, an evaluation) giving way to plain eager training with one
notice; on a GPU (tests marked ``gpu``, skipped without CUDA), the GPU path learns what the
CPU path learns, CUDA graphs train like eager steps, a capture or a compile that fails falls
back, fused trials match lone ones, and trials with fractional GPUs share one GPU."""

import copy
import logging
import math
import time

import pytest
import torch

from raytune_hpo.sweep.sections import defaults
from raytune_hpo.train.data import batches, load_dataset
from raytune_hpo.train.models import build_model
from raytune_hpo.train.optimizers import make_optimizer
from raytune_hpo.train.perf import (
    GRAPH_MAX_BATCH,
    PLAIN,
    PerfOptions,
    SpeedPath,
    TrainStep,
    resolve_options,
)
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


# --- a fast path that fails -------------------------------------------------------------

BF16 = PerfOptions(amp=torch.bfloat16, channels_last=False, compile_mode=None, cuda_graphs=False)


def fallback_notices(caplog):
    return [r.getMessage() for r in caplog.records if "plain eager path" in r.getMessage()]


def failing_once(forward):
    """``forward``, except that its first call raises; ``.calls`` counts calls."""

    def run(x):
        run.calls += 1
        if run.calls == 1:
            raise RuntimeError("capture failed\non purpose")
        return forward(x)

    run.calls = 0
    return run


def cross_entropy(out, y):
    loss = torch.nn.functional.cross_entropy(out.float(), y)
    return loss, loss


def train_steps(device, opts, fast_forward=lambda model: model, epochs=2):
    """``epochs`` epochs of ``TrainStep`` (MLP, digits) with ``opts``; ``fast_forward(model)``
    is the step's forward, the model itself its plain one. Per epoch (loss, accuracy, n)."""
    data = load_dataset("digits").to(device)
    index = torch.arange(len(data.labels), device=device)
    torch.manual_seed(0)
    model = build_model("mlp", in_shape=data.shape, num_classes=10, options={}).to(device)
    cfg = {**defaults(), "lr": 3e-3}
    opt = make_optimizer(
        model.parameters(), cfg, cuda=device.type == "cuda", capturable=opts.cuda_graphs
    )
    step = TrainStep(
        forward=fast_forward(model),
        plain_forward=model,
        objective=cross_entropy,
        opt_step=opt.step,
        zero_grad=lambda: opt.zero_grad(set_to_none=True),
        path=SpeedPath(opts),
        device=device,
    )
    gen = torch.Generator(device=device).manual_seed(0)
    out = []
    for _ in range(epochs):
        for x, y in batches(data, index, batch_size=64, gen=gen):
            step(x, y)
        loss_sum, correct, n = step.epoch_metrics()
        out.append((float(loss_sum) / n, float(correct) / n, n))
    return out, step


def test_a_fast_step_that_fails_gives_way_to_plain_eager_steps(caplog, one_thread):
    cpu = torch.device("cpu")
    fast = []
    with caplog.at_level(logging.WARNING, logger="raytune_hpo.train"):
        got, step = train_steps(cpu, BF16, lambda m: fast.append(failing_once(m)) or fast[0])
    (notice,) = fallback_notices(caplog)
    assert "bfloat16 autocast" in notice and "RuntimeError: capture failed on purpose" in notice
    assert fast[0].calls == 1 and step.opts == PLAIN  # one try of the fast path, then plain
    # No batch lost: the failed one ran again eagerly, and training is plain fp32 training.
    plain, _ = train_steps(cpu, PLAIN)
    assert got == plain and got[-1][2] == 1797 and got[-1][0] < got[0][0]


def test_a_plain_path_has_nothing_to_fall_back_to():
    def boom():
        raise ValueError("a real bug")

    with pytest.raises(ValueError, match="a real bug"):
        SpeedPath(PLAIN).run(boom, lambda: 0, what="training step")
    path = SpeedPath(BF16)
    assert path.run(boom, lambda: 1, what="training step") == 1
    with pytest.raises(ValueError, match="a real bug"):  # after the fallback, errors are errors
        path.run(lambda: 2, boom, what="training step")


def failing_compile(monkeypatch):
    """torch.compile through dynamo with a backend that fails, as inductor does without a
    C++ compiler: the first call of the compiled model raises BackendCompilerFailed."""
    real = torch.compile

    def no_compiler(gm, example_inputs):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, backend=no_compiler))
    torch._dynamo.reset()


def test_a_compile_that_fails_leaves_the_trial_training_eagerly(monkeypatch, caplog, one_thread):
    failing_compile(monkeypatch)
    cfg = {**FAST, "model": "mlp", "epochs": 3, "device": "cpu", "dropout": 0.2}
    with caplog.at_level(logging.WARNING, logger="raytune_hpo.train"):
        out = run({**cfg, "compile": True})
    (notice,) = fallback_notices(caplog)
    assert "torch.compile" in notice and "no C++ compiler here" in notice
    assert [m["epoch"] for m, _ in out] == [1, 2, 3]
    assert all(math.isfinite(m["train_loss"]) and math.isfinite(m["val_loss"]) for m, _ in out)
    plain = run({**cfg, "compile": False})
    assert [untimed(m) for m, _ in out] == [untimed(m) for m, _ in plain]


def test_an_evaluation_that_fails_falls_back_too(caplog, one_thread):
    from raytune_hpo.train.trainable import build_folds, prepare

    cfg = {**defaults(), **FAST, "model": "mlp", "amp": "bf16", "device": "cpu"}
    prep = prepare(cfg)
    (fold,) = build_folds(cfg, prep, SpeedPath(prep.opts))
    fold.step.forward = failing_once(fold.step.forward)
    with caplog.at_level(logging.WARNING, logger="raytune_hpo.train"):
        loss, acc = fold.evaluate(prep)
        assert fold.evaluate(prep) == (loss, acc)  # plain from then on
    (notice,) = fallback_notices(caplog)
    assert "in the evaluation" in notice and math.isfinite(loss) and 0 <= acc <= 1


def test_a_fused_group_falls_back_as_one(caplog, one_thread):
    from raytune_hpo.train.fused import FusedTrainer

    base = {"model": "mlp", "epochs": 2, "device": "cpu", "dropout": 0.0}
    cfgs = [{**base, "lr": lr} for lr in (1e-3, 3e-3)]

    def train(amp, fail):
        trainer = FusedTrainer([{**c, "amp": amp} for c in cfgs])
        if fail:
            fold = trainer.folds[0][0]
            fold.step.forward = failing_once(fold.step.forward)
        results = [trainer.train_epoch() for _ in range(2)]
        return [[untimed(r[i][0]) for r in results] for i in range(2)]

    with caplog.at_level(logging.WARNING, logger="raytune_hpo.train"):
        got = train("bf16", fail=True)
    assert len(fallback_notices(caplog)) == 1
    assert got == train("off", fail=False)  # every member trained on, in plain fp32


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

    from raytune_hpo.run.sweep import run_sweep
    from raytune_hpo.sweep.spec import SweepSpec

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


@pytest.mark.gpu
def test_a_cuda_graph_capture_that_fails_falls_back_to_eager_steps(caplog):
    cuda = torch.device("cuda")
    graphs = PerfOptions(amp=None, channels_last=False, compile_mode=None, cuda_graphs=True)

    def syncing(model):
        """The model with a host sync in its forward: fine eagerly, fatal to a capture."""

        def forward(x):
            out = model(x)
            float(out.sum())
            return out

        return forward

    with caplog.at_level(logging.WARNING, logger="raytune_hpo.train"):
        got, step = train_steps(cuda, graphs, syncing)
    (notice,) = fallback_notices(caplog)
    assert "CUDA graphs" in notice and step.opts == PLAIN
    eager, _ = train_steps(cuda, PLAIN)
    for (a_loss, a_acc, a_n), (b_loss, b_acc, b_n) in zip(got, eager, strict=True):
        assert a_n == b_n == 1797 and math.isfinite(a_loss)
        assert a_loss == pytest.approx(b_loss, rel=1e-3) and a_acc == pytest.approx(b_acc, abs=0.01)
    # The failed capture left CUDA usable: graphs still capture and train in this process.
    out = run({**FAST, "epochs": 2, "device": "cuda", "amp": "off", "cuda_graphs": True})
    assert out[-1][0]["val_accuracy"] > 0.8 and out[-1][0]["latency_ms"] > 0


@pytest.mark.gpu
def test_a_compile_that_fails_on_the_gpu_leaves_the_trial_training(monkeypatch, caplog):
    failing_compile(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="raytune_hpo.train"):
        out = run({**FAST, "epochs": 3, "device": "cuda", "compile": True})  # auto: bf16 too
    (notice,) = fallback_notices(caplog)
    assert "torch.compile (reduce-overhead)" in notice
    assert [m["epoch"] for m, _ in out] == [1, 2, 3] and out[-1][0]["val_accuracy"] > 0.8
    assert all(math.isfinite(m["train_loss"]) for m, _ in out)
