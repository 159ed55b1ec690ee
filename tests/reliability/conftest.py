"""Reliability probes (issue: no request can freeze the server, no rerun or kill can mix or lose data): each test
reproduces a failure a hostile user found, with the real parts (real files, real processes, a real server)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))  # serve_support: tiny models, a real server


@pytest.fixture(scope="session")
def serve_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two tiny checkpoints of tests/serve, trained for real by `kiln train`."""
    from serve_support import build_models

    return build_models(tmp_path_factory.mktemp("serve"))
