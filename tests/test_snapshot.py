"""What a kill leaves in a sweep directory, and the resume that follows: a searcher state cut
short (the resume point's copy is used), a recorded checkpoint Ray deleted after the snapshot,
result rows the snapshot does not know (dropped) or knows and storage does not have (restored),
and one real resume of such a state, quiet but for its one line.

One sweep runs on the shared Ray (module fixture); each test damages a copy of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import raytune_hpo.ray_compat as ray_compat
import raytune_hpo.run.resume_point as resume_point
import raytune_hpo.run.snapshot as snapshot
from raytune_hpo.errors import UserError
from raytune_hpo.names import RESUME_DIR

TRAIN = """
import raytune_hpo


def train(config):
    state = raytune_hpo.restore_state() or {"step": 0}
    for step in range(state["step"] + 1, 7):
        raytune_hpo.report({"score": step * config["x"], "step": step}, state={"step": step})
"""


@pytest.fixture(scope="module")
def finished(ray_session, tmp_path_factory) -> Path:
    from raytune_hpo.run.sweep import run_sweep
    from raytune_hpo.sweep.spec import SweepSpec

    tmp = tmp_path_factory.mktemp("snapshot")
    (tmp / "train.py").write_text(TRAIN)
    spec = SweepSpec.from_dict(
        {
            "metric": "score",
            "mode": "max",
            "num_samples": 2,
            "seed": 1,
            "searcher": {"name": "sobol"},
            "space": {"x": {"type": "float", "low": 0.1, "high": 1.0}},
            "trainable": {"function": "train.py:train"},
            "storage_path": str(tmp / "runs"),
        },
        base_dir=str(tmp),
    )
    return Path(run_sweep(spec).path)


@pytest.fixture
def exp(finished, tmp_path) -> Path:
    copy = tmp_path / finished.name
    shutil.copytree(finished, copy)
    return copy


def newest_searcher_state(exp: Path) -> Path:
    return max(exp.glob("searcher-state-*.pkl"))


def test_a_searcher_state_cut_short_is_taken_from_the_resume_point(exp):
    path = newest_searcher_state(exp)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # a kill while Ray copied it
    restored = resume_point.restore(str(exp), again="`again`")
    assert path.read_bytes() == whole
    assert f"{path.name} cut short" in restored.used
    assert restored.state == json.loads((exp / restored.state_name).read_text())


def test_a_resume_point_that_does_not_read_gives_way_to_the_one_before(exp):
    points, _ = resume_point.read_points(str(exp))
    newest, before = points[0], points[1]
    slot = exp / RESUME_DIR / newest.slot
    slot.write_bytes(slot.read_bytes()[:100])
    path = newest_searcher_state(exp)
    path.write_bytes(b"")
    restored = resume_point.restore(str(exp), again="`again`")
    assert f"resume point {newest.slot} unreadable" in restored.used
    assert json.loads(before.files[restored.state_name]) == restored.state
    assert resume_point.readable(path.read_bytes(), path.name)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_without_a_resume_point_a_lost_searcher_state_is_one_line(exp, damage):
    shutil.rmtree(exp / RESUME_DIR)  # a sweep saved before resume points
    path = newest_searcher_state(exp)
    if damage == "missing":
        for p in exp.glob("search*-state-*"):
            p.unlink()
    else:
        path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(UserError) as err:
        resume_point.restore(str(exp), again="`raytune-hpo run x`")
    msg = str(err.value)
    assert "\n" not in msg and "raytune-hpo run x" in msg
    assert ("is missing" if damage == "missing" else "cannot be read") in msg


# ---------------------------------------------------------------- a state a kill left
def _state(exp: Path) -> tuple[str, dict]:
    path = Path(snapshot.newest_state(str(exp)))
    return path.name, json.loads(path.read_text())


def _rows(exp: Path, trial: dict) -> list[dict]:
    text = (exp / trial["relative_logdir"] / "result.json").read_text()
    return [json.loads(x) for x in text.splitlines()]


def _paused_at(exp: Path, state: dict, step: int, deleted: tuple[int, ...]) -> dict:
    """Trial 0 as a kill leaves it: PAUSED at the checkpoint of ``step`` (and the one before)
    with the checkpoints of the steps ``deleted`` gone from storage. Returns its state."""
    entry = state["trial_data"][0]
    trial = json.loads(entry[0])
    meta = ray_compat.load_run_metadata(entry[1])
    latest, _ = ray_compat.checkpoint_results(meta)
    rows = _rows(exp, trial)
    parent = latest.checkpoint.path.rsplit("/", 1)[0]

    def result(s):
        row = rows[s - 1]
        path = f"{parent}/{row['checkpoint_dir_name']}"
        return ray_compat.checkpoint_result(path, latest.checkpoint.filesystem, row)

    chosen = result(step)
    ray_compat.set_checkpoint_results(meta, chosen, [result(step - 1), chosen])
    meta.last_result = rows[step - 1]
    for s in deleted:
        shutil.rmtree(exp / trial["relative_logdir"] / rows[s - 1]["checkpoint_dir_name"], True)
    trial["status"] = "PAUSED"
    entry[:] = [json.dumps(trial), meta.get_json_state()]
    return trial


def test_mend_continues_from_the_newest_checkpoint_there_and_keeps_its_rows(exp):
    name, state = _state(exp)
    trial = _paused_at(exp, state, step=3, deleted=(2, 3))  # 5 and 6 exist, each with its row
    mended = snapshot.mend(str(exp), resume_point.Restored(name, state, {}))
    entry = json.loads((exp / name).read_text())["trial_data"][0]
    latest, kept = ray_compat.checkpoint_results(ray_compat.load_run_metadata(entry[1]))
    rows = _rows(exp, trial)
    assert latest.checkpoint.path.endswith(rows[5]["checkpoint_dir_name"])
    assert [r.metrics["training_iteration"] for r in kept] == [5, 6]  # those on storage
    assert mended.continuing == {trial["trial_id"]: 6} and mended.repointed
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4, 5, 6]
    line = mended.line(None)
    assert "\n" not in line and "1 continue from their checkpoints" in line


def test_mend_drops_the_rows_reported_after_the_checkpoint_it_continues_from(exp):
    name, state = _state(exp)
    trial = _paused_at(exp, state, step=4, deleted=(6,))  # row 6's checkpoint never arrived
    before = (exp / trial["relative_logdir"] / "progress.csv").read_text().splitlines()
    mended = snapshot.mend(str(exp), resume_point.Restored(name, state, {}))
    assert [r["training_iteration"] for r in _rows(exp, trial)] == [1, 2, 3, 4, 5]
    assert mended.rows_dropped == 1 and mended.continuing[trial["trial_id"]] == 5
    after = (exp / trial["relative_logdir"] / "progress.csv").read_text().splitlines()
    assert after == before[:6]  # rebuilt as Ray's CSV logger wrote it, less the dropped row
    entry = json.loads((exp / name).read_text())["trial_data"][0]
    stored = ray_compat._trial_storage(json.loads(entry[0]))
    assert stored.current_checkpoint_index >= 4  # the next one is not written over the 5th


def test_mend_leaves_on_storage_only_the_checkpoints_ray_knows(exp):
    """Checkpoints whose rows were lost (written after the snapshot) are redone under a higher
    index: Ray would never delete the old ones (seen: two left with ``checkpoints.keep: 1``)."""
    name, state = _state(exp)
    trial = _paused_at(exp, state, step=5, deleted=())
    path = exp / trial["relative_logdir"] / "result.json"
    lines = path.read_text().splitlines()
    path.write_text("".join(f"{x}\n" for x in lines[:5]))  # row 6 lost, its checkpoint there
    strays = {json.loads(x)["checkpoint_dir_name"] for x in lines[5:]}
    assert all((exp / trial["relative_logdir"] / s).is_dir() for s in strays)
    mended = snapshot.mend(str(exp), resume_point.Restored(name, state, {}))
    assert mended.continuing[trial["trial_id"]] == 5
    entry = json.loads((exp / name).read_text())["trial_data"][0]
    latest, kept = ray_compat.checkpoint_results(ray_compat.load_run_metadata(entry[1]))
    known = {r.checkpoint.path.rsplit("/", 1)[1] for r in kept}
    there = {p.name for p in (exp / trial["relative_logdir"]).glob("checkpoint_*")}
    assert there == known and not strays & there, (there, known)


def test_mend_gives_a_trial_the_config_of_the_rows_it_keeps(exp):
    """A PBT exploit after the snapshot, at the trial's last step: its row (the step again,
    under the new config, checkpointed over the same directory) is kept, so the trial must
    resume under that config, not the snapshot's."""
    name, state = _state(exp)
    trial = _paused_at(exp, state, step=6, deleted=())
    path = exp / trial["relative_logdir"] / "result.json"
    lines = path.read_text().splitlines()
    exploited = json.loads(lines[-1])
    exploited["config"] = {**exploited["config"], "x": 0.123}
    path.write_text("".join(f"{x}\n" for x in [*lines, json.dumps(exploited)]))
    snapshot.mend(str(exp), resume_point.Restored(name, state, {}))
    entry = json.loads((exp / name).read_text())["trial_data"][0]
    assert json.loads(entry[0])["config"]["x"] == 0.123
    assert len(_rows(exp, trial)) == 7  # the exploit's row stays


def test_mend_restores_rows_the_snapshot_knows_and_storage_lost(exp):
    name, state = _state(exp)
    trial = _paused_at(exp, state, step=6, deleted=())
    path = exp / trial["relative_logdir"] / "result.json"
    lines = path.read_text().splitlines()
    path.write_text("".join(f"{x}\n" for x in lines[:3]) + lines[3][:20])  # copy cut short
    kept = {trial["trial_id"]: lines[2:]}  # what the resume point kept: rows 3 to 6
    mended = snapshot.mend(str(exp), resume_point.Restored(name, state, kept))
    assert path.read_text().splitlines() == lines
    assert mended.rows_added == 3 and mended.continuing[trial["trial_id"]] == 6


def test_known_rows_join_storage_and_the_resume_points_window():
    rows = [json.dumps({"training_iteration": i, "t": i}) for i in range(1, 7)]
    join = snapshot._merge_rows
    assert join(rows[:3], rows[1:5]) == rows[:5]  # overlapping
    assert join(rows[:3], rows[3:]) == rows  # contiguous
    assert join([], rows[:2]) == rows[:2]
    assert join(rows[:2], rows[4:]) == rows[:2]  # a gap: only what is sure
    assert join(rows, rows[2:4]) == rows  # storage already further


def test_exploits_the_kept_rows_do_not_show_are_dropped():
    def row(i, since):
        return {"training_iteration": i, "iterations_since_restore": since}

    rows = [row(1, 1), row(2, 2), row(3, 1), row(4, 2)]  # an exploit at 2 copying budget 2
    shown = {"trial_id": "a", "training_iteration": 2, "copied_at": 2}
    later = {"trial_id": "a", "training_iteration": 4, "copied_at": 3}
    assert snapshot._exploits_shown([shown, later], rows) == 1
    assert snapshot._exploits_shown([later], rows) == 0
    # A trial the snapshot does not know (started and exploited after it) starts again from
    # its first step on resume, under the same id: none of its exploits happened.
    assert snapshot._exploits_shown([shown], None) == 0


def test_the_exploit_a_snapshot_left_pending_is_kept(tmp_path):
    """Ray's PBT points an exploiting trial at its donor's checkpoint before it restores from
    it; a snapshot taken then resumes the exploit, so its record stays."""
    rows = [{"training_iteration": i, "iterations_since_restore": i} for i in (1, 2, 3, 4)]
    entry = {"trial_id": "a", "training_iteration": 4, "copied": "b", "copied_at": 3}
    path = tmp_path / "pbt_schedule.jsonl"
    path.write_text(json.dumps(entry) + "\n")
    assert snapshot._mend_schedule(str(tmp_path), {"a": rows}, {"a": 3}, set()) == 0
    assert snapshot._mend_schedule(str(tmp_path), {"a": rows}, {}, {"a"}) == 0  # it ended it
    assert snapshot._mend_schedule(str(tmp_path), {"a": rows}, {}, set()) == 1
    assert path.read_text() == ""


def test_a_killed_sweeps_state_resumes_quietly_with_its_one_line(exp, ray_session, capfd):
    """The traceback Ray printed on such a resume (issue 39: "Error handling checkpoint ...
    FileNotFoundError: Path not found ... checkpoint_000002") is gone."""
    from raytune_hpo.run.sweep import resume

    name, state = _state(exp)
    trial = _paused_at(exp, state, step=5, deleted=(4, 6))  # continues from 5: row 6 again
    (exp / name).write_text(json.dumps(state))
    shutil.rmtree(exp / RESUME_DIR)  # Ray's own files, as a sweep saved before resume points
    table = resume(exp).table.set_index("trial_id")
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error handling checkpoint" not in err, err[-3000:]
    assert "raytune-hpo: resuming from Ray's last snapshot: 1 trial(s) finished, 1 continue" in err
    assert table.loc[trial["trial_id"], "status"] == "OK"
    assert table.loc[trial["trial_id"], "epochs"] == 6
    assert [r["training_iteration"] for r in _rows(exp, trial)] == [1, 2, 3, 4, 5, 6]


CRASH_ONCE = """
import os

import raytune_hpo


def train(config):
    state = raytune_hpo.restore_state() or {"step": 0}
    for step in range(state["step"] + 1, 5):
        if step == 3:  # reported without a checkpoint
            raytune_hpo.report({"score": step})
            continue
        if step == 4 and not os.path.exists(config["marker"]):  # its worker dies, once
            open(config["marker"], "w").close()
            os._exit(1)
        raytune_hpo.report({"score": step}, state={"step": step})
"""


def test_a_trial_retried_after_its_worker_died_reports_each_epoch_once(ray_session, tmp_path):
    """Ray retries it from its last checkpoint (step 2); row 3, reported after that checkpoint,
    is dropped before the retry reports it again (the kill harness saw "2 followed by 2")."""
    from raytune_hpo.run.sweep import run_sweep
    from raytune_hpo.sweep.spec import SweepSpec

    (tmp_path / "crash.py").write_text(CRASH_ONCE)
    spec = SweepSpec.from_dict(
        {
            "metric": "score",
            "mode": "max",
            "num_samples": 1,
            "max_failures": 1,
            "space": {"x": {"type": "float", "low": 0, "high": 1}},
            "trainable": {
                "function": "crash.py:train",
                "config": {"marker": str(tmp_path / "crashed")},
            },
            "storage_path": str(tmp_path / "runs"),
        },
        base_dir=str(tmp_path),
    )
    result = run_sweep(spec)
    assert (tmp_path / "crashed").exists()  # it did die once
    (row,) = result.table.to_dict("records")
    assert row["status"] == "OK" and row["epochs"] == 4
    (trial_dir,) = [p for p in Path(result.path).iterdir() if (p / "result.json").is_file()]
    rows = [json.loads(x) for x in (trial_dir / "result.json").read_text().splitlines()]
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4]
    csv = (trial_dir / "progress.csv").read_text().splitlines()
    assert len(csv) == 5  # its header and a line per row
