"""Tell Ray that this spot (preemptible) node is about to go, so its trials keep their retries.

The launcher configs start it on every worker after ``ray start``: ``python spot_drain.py aws``
(or ``gcp``). It waits for the cloud's interruption notice (AWS: the instance metadata's
``spot/instance-action``, two minutes ahead; Google Cloud: ``instance/preempted``, about 30 s
ahead), then drains this node with Ray's preemption reason and a deadline a little before the
end: ``ray drain-node --reason DRAIN_NODE_REASON_PREEMPTION``. No new trial starts on a
draining node, and when the node dies after the deadline Ray records a preemption: Tune
retries its trials from their checkpoints without counting a failure against
``max_failures``. A node lost without this notice counts one failure per trial on it
(Ray cannot tell it from a crash). On an instance that is never interrupted it only polls.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

AWS = "http://169.254.169.254/latest"
GCP = "http://metadata.google.internal/computeMetadata/v1/instance/preempted"
GCP_NOTICE_S = 30.0  # Google Cloud stops a preempted VM about 30 s after telling it
MARGIN_S = 10.0  # the deadline this much before the end: Ray must see the node die after it
POLL_S = 5.0


def _get(url: str, headers: dict[str, str], method: str = "GET", timeout: float = 2) -> str:
    request = urllib.request.Request(url, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read().decode()


def aws_notice(base: str = AWS) -> float | None:
    """Seconds until AWS reclaims this spot instance; None while there is no notice
    (instance metadata v2: a session token first)."""
    token = _get(f"{base}/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"}, "PUT")
    try:
        body = _get(f"{base}/meta-data/spot/instance-action", {"X-aws-ec2-metadata-token": token})
    except urllib.error.HTTPError as e:
        if e.code == 404:  # no interruption scheduled
            return None
        raise
    when = datetime.fromisoformat(json.loads(body)["time"].replace("Z", "+00:00"))
    return (when - datetime.now(timezone.utc)).total_seconds()


def gcp_notice(url: str = GCP, wait_s: int = 60) -> float | None:
    """Seconds until Google Cloud stops this preemptible VM; None while it is not preempted
    (the metadata server holds the request until the value changes or ``wait_s`` passes)."""
    value = _get(
        f"{url}?wait_for_change=true&timeout_sec={wait_s}",
        {"Metadata-Flavor": "Google"},
        timeout=wait_s + 10,
    )
    return GCP_NOTICE_S if value.strip().upper() == "TRUE" else None


def drain_command(seconds_left: float, *extra: str) -> list[str]:
    """``ray drain-node`` for this node (``extra``: e.g. ``--address``, ``--node-id``), with
    Ray's preemption reason and a deadline ``MARGIN_S`` before the end."""
    deadline = max(1, int(seconds_left - MARGIN_S))
    return [
        "ray",
        "drain-node",
        "--reason=DRAIN_NODE_REASON_PREEMPTION",
        "--reason-message=spot interruption",
        f"--deadline-remaining-seconds={deadline}",
        *extra,
    ]


def main(argv: list[str]) -> int:
    notices = {"aws": aws_notice, "gcp": gcp_notice}
    if len(argv) != 1 or argv[0] not in notices:
        print("usage: spot_drain.py aws|gcp", file=sys.stderr)
        return 2
    notice = notices[argv[0]]
    while True:
        try:
            left = notice()
        except (OSError, ValueError, KeyError) as e:  # metadata server busy or not there yet
            print(f"spot_drain: {e}", file=sys.stderr, flush=True)
            time.sleep(POLL_S)
            continue
        if left is not None:
            print(f"spot_drain: interruption in {left:.0f} s: draining", flush=True)
            return subprocess.run(drain_command(left)).returncode
        if notice is aws_notice:  # Google's server holds each request until a change
            time.sleep(POLL_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
