"""Shared fixtures: one real local Ray (2 CPUs) for the whole test session."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
    )
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(config, items):
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
    from raytune_hpo.cli import main

    def check(argv: list[str], expected: str) -> None:
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.count("\n") == 1 and err.startswith("raytune-hpo: error: "), err
        assert "Traceback" not in err and expected in err, err

    return check
