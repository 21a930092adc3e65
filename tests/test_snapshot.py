"""A sweep killed between Ray's deletion of an old checkpoint and its next experiment snapshot
resumes: the trial continues from its newest checkpoint instead of failing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import raytune_hpo.run.snapshot as snapshot
from raytune_hpo.run.sweep import resume, run_sweep
from raytune_hpo.sweep.spec import SweepSpec

TRAIN = """
import raytune_hpo


def train(config):
    state = raytune_hpo.restore_state() or {"step": 0}
    for step in range(state["step"] + 1, 7):
        raytune_hpo.report({"score": step * config["x"], "step": step}, state={"step": step})
"""


def _stale(exp: Path) -> str:
    """Make the newest experiment state what a kill leaves behind: one trial PAUSED at an
    earlier checkpoint that has since been deleted (newer ones exist). Returns its id."""
    path = Path(snapshot.newest_state(str(exp)))
    state = json.loads(path.read_text())
    entry = state["trial_data"][0]
    trial = json.loads(entry[0])
    trial_dir = exp / trial["relative_logdir"]
    meta = snapshot.load_run_metadata(entry[1])
    latest = snapshot.latest_checkpoint(meta)
    lines = [json.loads(x) for x in (trial_dir / "result.json").read_text().splitlines()]
    early = next(r for r in lines if r["step"] == 2)
    parent = latest.checkpoint.path.rsplit("/", 1)[0]
    snapshot.set_latest_checkpoint(meta, f"{parent}/{early['checkpoint_dir_name']}", early)
    shutil.rmtree(trial_dir / early["checkpoint_dir_name"], ignore_errors=True)
    trial["status"] = "PAUSED"
    state["trial_data"][0] = [json.dumps(trial), meta.get_json_state()]
    path.write_text(json.dumps(state))
    return trial["trial_id"]


def test_a_state_naming_a_deleted_checkpoint_resumes_from_the_newest(ray_session, tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    spec = SweepSpec.from_dict(
        {
            "metric": "score",
            "mode": "max",
            "num_samples": 2,
            "space": {"x": {"type": "float", "low": 0.1, "high": 1.0}},
            "trainable": {"function": "train.py:train"},
            "storage_path": str(tmp_path / "runs"),
        },
        base_dir=str(tmp_path),
    )
    exp = Path(run_sweep(spec).path)
    tid = _stale(exp)
    state = json.loads(Path(snapshot.newest_state(str(exp))).read_text())
    entry = next(e for e in state["trial_data"] if json.loads(e[0])["trial_id"] == tid)
    assert not snapshot._exists(
        snapshot.latest_checkpoint(snapshot.load_run_metadata(entry[1])).checkpoint
    )

    table = resume(exp).table.set_index("trial_id")
    assert table.loc[tid, "status"] == "OK" and table.loc[tid, "epochs"] == 6
    assert "error" not in table or table["error"].isna().all()


def test_mend_names_ray_when_its_private_state_format_changes():
    with pytest.raises(RuntimeError, match="changed its experiment state"):
        snapshot.latest_checkpoint(object())
