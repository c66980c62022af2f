"""Shared fixtures: the optional local mirror of the real benchmark data and checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# one thread per xdist worker, so parallel workers do not oversubscribe the cores
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))


def mirror_root() -> Path | None:
    """The folder named by N3BENCH_MIRROR (laid out like ``datasets/`` + ``pretrained/``), if it exists."""
    value = os.environ.get("N3BENCH_MIRROR")
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    return path if (path / "datasets").is_dir() else None


@pytest.fixture
def mirror() -> Path:
    """The real-data mirror; tests that need it are skipped where it is absent."""
    root = mirror_root()
    if root is None:
        pytest.skip("needs N3BENCH_MIRROR pointing at a folder with datasets/ and pretrained/")
    return root
