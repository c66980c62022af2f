"""Shared fixtures: the optional local mirror of the real benchmark data and checkpoints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


REPO = Path(__file__).parents[1]


def shell(*args: str, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command offline (no mirror) with this interpreter's tools first on PATH; fail with its output."""
    base = {key: value for key, value in os.environ.items() if key != "N3BENCH_MIRROR"}
    base["PATH"] = str(Path(sys.executable).parent) + os.pathsep + base.get("PATH", "")
    base.setdefault("OMP_NUM_THREADS", "1")  # beside other xdist workers, more threads only oversubscribe
    result = subprocess.run(args, cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=1800)
    if check:
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def commit_all(project: Path, message: str) -> None:
    shell("git", "add", "-A", cwd=project)
    shell("git", "-c", "user.name=n3bench", "-c", "user.email=n3bench@localhost", "commit", "-qm", message,
          cwd=project)


@pytest.fixture(scope="session")
def copy_repository(tmp_path_factory):
    """A factory of fresh copies of the repository (tracked and unignored files, one commit), like a clone."""

    def make() -> Path:
        target = tmp_path_factory.mktemp("project")
        listed = shell("git", "ls-files", "-co", "--exclude-standard", "-z", cwd=REPO).stdout.split("\0")
        for name in filter(None, listed):
            if (REPO / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, target / name)
        shell("git", "init", "-q", cwd=target)
        commit_all(target, "copy")
        return target

    return make
