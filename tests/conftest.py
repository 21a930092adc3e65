"""Shared fixtures: one real local Ray (2 CPUs) for the whole test session."""

from __future__ import annotations

import os
import time

import pytest

CPUS = 2


def _start_ray(tmp_path_factory) -> None:
    import ray

    ray.init(
        num_cpus=CPUS,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
    )


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    _start_ray(tmp_path_factory)
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def _ray_cpus_given_back(request, tmp_path_factory):
    """After a test on the shared Ray, its CPUs must come back. Once in CI Ray's raylet kept a
    quarter of a CPU that no worker or placement group held, and every later test that needs
    two trials at once ran one at a time. Ray is then restarted, with a warning naming the
    test after which it happened."""
    yield
    if "ray_session" not in request.fixturenames:
        return
    import ray

    if not ray.is_initialized():
        return
    deadline = time.monotonic() + 20  # Tune frees its placement groups asynchronously
    while (free := ray.available_resources().get("CPU", 0.0)) < CPUS:
        if time.monotonic() > deadline:
            request.node.warn(
                pytest.PytestWarning(f"Ray kept {CPUS - free:g} CPU after this test: restarted")
            )
            ray.shutdown()
            _start_ray(tmp_path_factory)
            return
        time.sleep(0.2)


def pytest_collection_modifyitems(config, items):
    # A test on the shared Ray runs real trials: it is an integration test, whatever its file
    # says (the fast subset, -m "not integration and not cluster", starts no Ray).
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_line_error(capsys):
    """``one_line_error(argv, expected)``: the CLI exits 2 with one line that holds
    ``expected`` and no traceback."""
    from raytune_hpo.cli.commands import main

    def check(argv: list[str], expected: str) -> None:
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.count("\n") == 1 and err.startswith("raytune-hpo: error: "), err
        assert "Traceback" not in err and expected in err, err

    return check
