"""The jobs client against a dashboard that misbehaves: a small HTTP server on loopback that
answers what Ray's ``JobSubmissionClient`` asks first (the version, the packages) and then drops
the job upload without an answer, as a head whose job agent is not up did in CI."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import ray

from raytune_hpo.cli.commands import main
from raytune_hpo.jobs import client as jobs


class DropsJobs(BaseHTTPRequestHandler):
    posts = 0

    def log_message(self, *args):  # quiet
        pass

    def _json(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/api/version"):
            self._json({"version": "4", "ray_version": ray.__version__, "ray_commit": "x"})
        else:  # a package the client would upload: already there
            self._json({})

    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._json({})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).posts += 1
        self.close_connection = True  # no answer: the client sees RemoteDisconnected


@pytest.fixture
def dashboard():
    server = ThreadingHTTPServer(("127.0.0.1", 0), DropsJobs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    DropsJobs.posts = 0
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_dropped_upload_is_retried_then_one_line(dashboard, monkeypatch, capsys):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setattr(jobs, "AGENT_WAIT_S", 3)
    start = time.monotonic()
    rc = main(["submit", "--address", dashboard])
    took = time.monotonic() - start
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"raytune-hpo: error: --address {dashboard}: "), err
    assert jobs.DROPPED in last and "within 3 s" in last, last
    assert DropsJobs.posts >= 1 and took >= 3  # it waited out the bound, then gave up
