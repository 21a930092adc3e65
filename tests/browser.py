"""Pages as Debian's Chromium draws them (headless), for the report tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def screenshot(page: Path, shot: Path, height: int):
    """Draw ``page`` 1300 px wide and ``height`` high into ``shot``; returns its pixels.
    Skips the test, with the reason, where Chromium is not installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed: the page was checked without a browser")
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={shot.parent / 'profile'}",
            f"--window-size=1300,{height}",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    import matplotlib.image

    return matplotlib.image.imread(shot)
