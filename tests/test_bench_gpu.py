"""scripts/bench_gpu.py runs on the CPU (--quick: seconds, no Ray) and writes the JSON the
GPU run fills in: the trainable-vs-bare ratio, the fused engine's figures, and null packed
figures with the trial counts actually run."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(*args, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_gpu.py"), "--out", str(tmp_path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_quick_cpu_run_writes_the_json_and_prints_the_table(tmp_path):
    proc = bench("--quick", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads((tmp_path / "gpu-bench-cpu-quick.json").read_text())
    assert out["device"] == "cpu" and "cores" in out["device_name"] and out["quick"] is True
    ratio = out["trainable_vs_bare_ratio_bs32"]
    assert math.isfinite(ratio) and 0.2 < ratio < 5  # measured, not a placeholder
    bs32 = out["ratio"]["bs32"]
    assert bs32["pairs"] == 2 and bs32["fit_images_per_s"] > 0 and bs32["bare_images_per_s"] > 0
    assert out["engine"]["counts"] == [2] and out["engine"]["2"]["member_images_per_s"] > 0
    assert out["packed16_images_per_s"] is None and out["fused16_images_per_s"] is None
    assert out["packed"]["counts"] == [] and out["fused"]["counts"] == []
    assert "fit bs32" in proc.stdout and f"{ratio:7.3f}" in proc.stdout
    assert "engine: fused 2" in proc.stdout


def test_cuda_without_a_gpu_exits_with_a_message(tmp_path):
    proc = bench("--device", "cuda", tmp_path=tmp_path)
    assert proc.returncode != 0 and "no CUDA device here" in proc.stderr
    assert not list(tmp_path.iterdir())
