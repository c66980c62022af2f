"""End to end: the README's `dvc repro` of the smoke profile in a temporary copy of the repository, then sharing
its results through a DVC remote with a fresh clone that recomputes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
pytestmark = pytest.mark.slow


def sh(*args: str, cwd: Path, env: dict | None = None) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def offline_env() -> dict:
    env = {key: value for key, value in os.environ.items() if key != "N3BENCH_MIRROR"}
    bin_dir = str(Path(sys.executable).parent)
    return {**env, "PATH": bin_dir + os.pathsep + env.get("PATH", ""), "CI": "true"}


def copy_repository(target: Path) -> Path:
    """The repository's tracked and unignored files in a new git repository (what a fresh clone holds)."""
    listed = sh("git", "ls-files", "-co", "--exclude-standard", "-z", cwd=REPO).split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        sh("git", *command, cwd=target)
    return target


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    project = copy_repository(tmp_path_factory.mktemp("project"))
    sh("dvc", "repro", cwd=project, env=offline_env())
    return project


def test_smoke_repro_writes_every_expected_output(smoke_run):
    metrics = smoke_run / "reports" / "metrics" / "smoke"
    for cell in ("denoise/noisy-25", "denoise/bm3d-25", "denoise/dncnn-s-25", "denoise/n3net-25", "sr/bicubic-2",
                 "sr/vdsr-2"):
        summary = json.loads((metrics / f"{cell}.json").read_text())
        dataset = "sample_gray" if cell.startswith("denoise") else "sample_rgb"
        assert summary[dataset]["n_images"] >= 3 and summary[dataset]["psnr"] > 15, cell
    assert "skipped" in json.loads((metrics / "denoise/bm3d-50.json").read_text())
    noisy = json.loads((metrics / "denoise/noisy-25.json").read_text())["sample_gray"]["psnr"]
    for learned in ("dncnn-s", "n3net"):
        trained = json.loads((metrics / f"denoise/{learned}-25.json").read_text())["sample_gray"]["psnr"]
        assert trained > noisy + 4, f"{learned} trained in the smoke profile should clearly beat the noisy input"
    report = (smoke_run / "reports" / "smoke" / "README.md").read_text()
    assert "smoke" in report.lower() and "not comparable" in report.lower()
    assert list((smoke_run / "reports" / "smoke").rglob("*.png"))
    assert (smoke_run / "data" / "prepared" / "set12" / "SKIPPED").exists()


def test_second_repro_is_a_fast_no_op(smoke_run):
    began = time.perf_counter()
    output = sh("dvc", "repro", cwd=smoke_run, env=offline_env())
    elapsed = time.perf_counter() - began
    assert "Running stage" not in output
    assert "dvc status" not in sh("dvc", "status", cwd=smoke_run, env=offline_env()).lower()
    print(f"no-op dvc repro: {elapsed:.1f} s")


def test_results_travel_through_a_remote_to_a_fresh_clone(smoke_run, tmp_path):
    env = offline_env()
    sh("dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"), cwd=smoke_run, env=env)
    sh("git", "add", "-A", cwd=smoke_run)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results", cwd=smoke_run)
    sh("dvc", "push", "--run-cache", cwd=smoke_run, env=env)
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(smoke_run), str(clone), cwd=tmp_path)
    sh("dvc", "pull", "--run-cache", cwd=clone, env=env)
    output = sh("dvc", "repro", cwd=clone, env=env)
    assert "Running stage" not in output, output[-2000:]
