"""Sweep directories on local disk and on S3: `storage` itself, then a real sweep writing to an
S3 API on loopback (moto's server), killed, resumed, and read back by `results` and `report`."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sweep_procs import kill_group, start_run

from raytune_hpo import storage
from raytune_hpo.cli.commands import main
from raytune_hpo.results.table import RESULTS_CSV, SPEC_COPY
from raytune_hpo.sweep.spec import UserError

BUCKET = "raytune-hpo-test"


def test_uris_keep_their_query_at_the_end():
    uri = "s3://b/sweeps/?endpoint_override=127.0.0.1:9000&scheme=http"
    assert storage.is_uri(uri) and not storage.is_uri("/tmp/x")
    assert storage.normalize(uri) == "s3://b/sweeps?endpoint_override=127.0.0.1:9000&scheme=http"
    joined = storage.join(uri, "exp", "sweep.yaml")
    assert joined == "s3://b/sweeps/exp/sweep.yaml?endpoint_override=127.0.0.1:9000&scheme=http"
    assert storage.name(joined) == "sweep.yaml" and storage.name("gs://b/a/") == "a"
    assert storage.join("/tmp/a", "b", "c") == "/tmp/a/b/c"
    assert storage.normalize("~/x") == os.path.expanduser("~/x")


WRITER = """
import sys
from raytune_hpo import storage

fs = storage.ray_filesystem(sys.argv[1])
with fs.open_output_stream(sys.argv[1]) as f:
    f.write(b"new" * 1000)
    print("writing", flush=True)
    while True:
        f.write(b"new" * 100000)
"""


def test_a_killed_writer_leaves_the_whole_old_file(tmp_path):
    """What Ray writes through ``ray_filesystem`` (its experiment state, the searcher's,
    result rows) is the old file or the new one, whenever the writer is SIGKILLed."""
    target = tmp_path / "experiment_state-x.json"
    target.write_text('{"old": true}')
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout.readline() == b"writing\n"
    proc.kill()
    proc.wait()
    assert target.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]  # its leftover
    assert storage.remove_leftovers(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_rays_file_system_writes_whole_files_and_travels(tmp_path):
    import pickle

    import pyarrow.fs as pafs

    assert storage.ray_filesystem("s3://bucket/sweeps") is None  # S3 writes whole objects
    fs = storage.ray_filesystem(tmp_path)
    out = fs.open_output_stream(str(tmp_path / "a" / "b.json"))
    out.write(b"half")
    assert not (tmp_path / "a" / "b.json").exists()  # not there until it is whole
    out.close()
    assert (tmp_path / "a" / "b.json").read_bytes() == b"half"
    src = tmp_path / "staging"
    (src / "trial").mkdir(parents=True)
    (src / "trial" / "result.json").write_text("{}\n")
    pafs.copy_files(str(src), str(tmp_path / "exp"), destination_filesystem=fs)
    assert (tmp_path / "exp" / "trial" / "result.json").read_text() == "{}\n"
    again = pickle.loads(pickle.dumps(fs))  # Ray ships it to the trials' workers
    assert again.equals(fs) and again.type_name == fs.type_name
    sel = pafs.FileSelector(str(tmp_path / "exp"), recursive=True)
    assert len(again.get_file_info(sel)) == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """An S3 API on loopback (moto's server) with one bucket; Ray and pyarrow reach it
    through the AWS_* environment variables, as they would reach AWS."""
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
    import pyarrow.fs as pafs

    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("AWS_PROFILE", raising=False)
        fs = pafs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{port}", scheme="http", allow_bucket_creation=True
        )
        fs.create_dir(BUCKET)
        yield f"s3://{BUCKET}"
    server.stop()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_read_write_list_download(where, request, tmp_path):
    base = str(tmp_path / "d") if where == "local" else f"{request.getfixturevalue('s3')}/rw"
    storage.write_text(storage.join(base, "a.txt"), "alpha")
    storage.write_bytes(storage.join(base, "sub", "b.bin"), b"\x00\x01")
    storage.write_text(storage.join(base, "sub", "checkpoint_000001", "state.pt"), "big")
    assert storage.read_text(storage.join(base, "a.txt")) == "alpha"
    assert storage.exists(base) and storage.is_dir(base) and not storage.is_file(base)
    assert storage.is_file(storage.join(base, "a.txt"))
    assert not storage.exists(storage.join(base, "nothing"))
    assert storage.listdir(base) == ["a.txt", "sub"]
    assert storage.listdir(storage.join(base, "nothing")) == []
    assert storage.glob(base, "*.txt") == [storage.join(base, "a.txt")]
    with storage.local_copy(base, keep=lambda rel: "checkpoint_" not in rel) as d:
        assert (d / "a.txt").read_text() == "alpha"
        assert (d / "sub" / "b.bin").read_bytes() == b"\x00\x01"
        # A local directory is read in place; a download leaves what `keep` rejects behind.
        assert (d / "sub" / "checkpoint_000001").exists() == (where == "local")
        copied = d
    assert copied.exists() == (where == "local")  # a download is removed afterwards
    with pytest.raises(UserError) as err:
        storage.read_text(storage.join(base, "nothing"))
    assert "nothing" in str(err.value) and "\n" not in str(err.value)


def test_a_missing_bucket_is_one_line(s3):
    with pytest.raises(UserError) as err:
        storage.write_text("s3://no-such-bucket-here/x/sweep.yaml", "a")
    msg = str(err.value)
    assert msg.startswith("s3://no-such-bucket-here/x/sweep.yaml: ") and "\n" not in msg
    assert main(["results", "s3://no-such-bucket-here/x"]) == 2
    assert main(["resume", f"{s3}/never-ran"]) == 2


SWEEP = (
    "name: s3sweep\nnum_samples: 6\nmax_concurrent: 2\nseed: 2\nmetric: val_accuracy\n"
    "searcher: {name: sobol}\n"
    "space: {lr: {type: float, low: 0.001, high: 0.03, log: true}}\n"
    "trainable: {function: train.py:train}\n"
)
TRAIN = """
import time

import raytune_hpo


def train(config):
    state = raytune_hpo.restore_state() or {"epoch": 0}
    for epoch in range(state["epoch"] + 1, 5):
        time.sleep(0.4)
        acc = 1 - 1 / (1 + 30 * config["lr"] * epoch)
        raytune_hpo.report({"val_accuracy": acc, "val_loss": 1 - acc}, state={"epoch": epoch})
"""


def histories(exp: str) -> dict[str, list[dict]]:
    """Per trial, the results its result.json in the bucket holds."""
    out = {}
    for trial in storage.listdir(exp):
        f = storage.join(exp, trial, "result.json")
        if storage.is_file(f):
            rows = [json.loads(x) for x in storage.read_text(f).splitlines() if x.strip()]
            if rows:
                out[rows[0]["trial_id"]] = rows
    return out


def killable(root: str) -> str | None:
    """The sweep directory once it holds Ray's experiment state, the searcher's state and
    at least one whole trial's results (what resume needs to have something to keep)."""
    names = storage.listdir(root)
    if len(names) != 1:
        return None
    exp = storage.join(root, names[0])
    inside = storage.listdir(exp)
    if not any(n.startswith("experiment_state-") for n in inside):
        return None
    if not any(n.startswith("searcher-state-") for n in inside):
        return None
    return exp if sum(len(r) for r in histories(exp).values()) >= 4 else None


@pytest.mark.integration
def test_s3_sweep_killed_resumed_on_a_fresh_machine_and_read(s3, tmp_path, capsys, monkeypatch):
    """The head and its local disk lost for good: the driver and its embedded Ray SIGKILLed,
    Ray's temp dir deleted; `raytune-hpo resume s3://...` in a fresh process, with a fresh Ray
    and a fresh home directory, finishes the sweep with every trial once and its rows whole."""
    (tmp_path / "train.py").write_text(TRAIN)
    sweep = tmp_path / "s3.yaml"
    sweep.write_text(SWEEP)
    root = f"{s3}/sweeps"
    proc = start_run(sweep, root, tmp_path)
    try:
        deadline = time.monotonic() + 300
        while (exp := killable(root)) is None:
            assert proc.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the sweep wrote nothing to the bucket in time"
            time.sleep(0.3)
    finally:
        kill_group(proc)  # SIGKILL: the driver and its Ray get no chance to clean up
    shutil.rmtree(proc.ray_tmp, ignore_errors=True)  # the head's local disk, gone
    assert storage.is_file(storage.join(exp, SPEC_COPY))  # written before Ray started
    assert not storage.exists(storage.join(exp, RESULTS_CSV))
    before = histories(exp)

    # An interrupted sweep on S3 reads as it is.
    assert main(["results", exp, "--format", "json"]) == 0
    live = json.loads(capsys.readouterr().out)
    assert {r["trial_id"] for r in live} >= set(before)

    home = tmp_path / "fresh-home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "RAY_TMPDIR": tempfile.mkdtemp(prefix="rt", dir="/tmp"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-m", "raytune_hpo.cli", "resume", exp],
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
        start_new_session=True,
        cwd=home,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1].endswith(f"Results: {exp}")  # scheme kept
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "raytune-hpo: resuming from " in done.stderr

    # Nothing lost: every trial once, each with its rows 1..4 once, the earlier ones kept.
    assert storage.is_file(storage.join(exp, RESULTS_CSV))
    assert main(["results", exp, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 6 and len({r["trial_id"] for r in rows}) == 6
    assert all(r["status"] == "OK" and r["epochs"] == 4 for r in rows)
    after = {t: h for t, h in histories(exp).items() if t in {r["trial_id"] for r in rows}}
    assert len(after) == 6
    assert all([x["training_iteration"] for x in h] == [1, 2, 3, 4] for h in after.values())
    for tid, old in before.items():
        if tid in after:  # one that started after Ray's last snapshot runs again as another
            assert after[tid][: len(old)] == old[: len(after[tid])]
    assert main(["results", exp, "--by", "best"]) == 0
    assert "best_epoch" in capsys.readouterr().out

    # Grown by two trials on S3, the searcher restored from the bucket.
    grown = subprocess.run(
        [sys.executable, "-m", "raytune_hpo.cli", "extend", exp, "--num-samples", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
        start_new_session=True,
        cwd=home,
    )
    assert grown.returncode == 0, grown.stdout[-3000:] + grown.stderr[-3000:]
    assert main(["results", exp, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 8 and len({r["trial_id"] for r in rows}) == 8
    assert all(r["status"] == "OK" and r["epochs"] == 4 for r in rows)

    # The report reads the bucket; by default it lands in ./report-<sweep>.
    monkeypatch.chdir(tmp_path)
    assert main(["report", exp]) == 0
    out = tmp_path / f"report-{storage.name(exp)}"
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "s3sweep" in page
    assert main(["report", exp, "--out", f"{s3}/reports/one"]) == 0
    assert storage.is_file(f"{s3}/reports/one/report.html")
