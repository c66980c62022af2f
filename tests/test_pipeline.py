"""End to end: the README's `dvc repro` of the smoke profile in a fresh copy of the repository, then sharing
its results through a DVC remote with a fresh clone that recomputes nothing.

The module-scoped run is shared by the tests below; `xdist_group` keeps them on one worker (`--dist loadgroup`
in pyproject's addopts), so the smoke pipeline runs once per test session."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import commit_all, shell

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("smoke_pipeline")]


@pytest.fixture(scope="module")
def smoke_run(copy_repository) -> Path:
    project = copy_repository()
    began = time.perf_counter()
    shell("dvc", "repro", cwd=project)
    print(f"smoke dvc repro: {time.perf_counter() - began:.0f} s")
    return project


def psnr(project: Path, cell: str, dataset: str) -> float:
    return json.loads((project / "reports/metrics/smoke" / f"{cell}.json").read_text())[dataset]["psnr"]


def test_smoke_repro_writes_every_expected_output(smoke_run):
    for cell in ("denoise/noisy-25", "denoise/bm3d-25", "denoise/dncnn-s-25", "denoise/n3net-25",
                 "denoise/n3net-knn-25"):
        assert psnr(smoke_run, cell, "sample_gray") > 15, cell
    for cell in ("sr/bicubic-2", "sr/vdsr-2", "sr/n3net-sr-2"):
        assert psnr(smoke_run, cell, "sample_rgb") > 15, cell
    for cell in ("realnoise/noisy-0", "realnoise/bm3d-0", "realnoise/dncnn-pg-0", "realnoise/n3net-pg-0"):
        assert psnr(smoke_run, cell, "sample_pg") > 15, cell
    assert "skipped" in json.loads((smoke_run / "reports/metrics/smoke/denoise/bm3d-50.json").read_text())
    assert (smoke_run / "data/prepared/set12/SKIPPED").exists()
    for learned in ("dncnn-s", "n3net"):
        gain = psnr(smoke_run, f"denoise/{learned}-25", "sample_gray") - psnr(smoke_run, "denoise/noisy-25",
                                                                              "sample_gray")
        assert gain > 4, f"{learned} trained by the smoke profile should clearly beat the noisy input ({gain:.2f} dB)"
    report = (smoke_run / "reports/smoke/README.md").read_text()
    assert "not comparable" in report.lower()
    assert list((smoke_run / "reports/smoke").rglob("*.png"))


def test_smoke_correspondence_networks_beat_ransac(smoke_run):
    """The acceptance point of the smoke profile: CNet and N3Net-CNet, each followed by RANSAC on its predicted
    inliers, beat RANSAC alone on mAP@10 of the synthetic test pairs, with a paired bootstrap CI above 0."""
    def map10(method: str) -> float:
        cell = json.loads((smoke_run / f"reports/metrics/smoke/correspondence/{method}-synthetic.json").read_text())
        return cell["synthetic"]["map10"]

    assert map10("cnet") > map10("ransac") and map10("n3net-cnet") > map10("ransac")
    paired = pd.read_csv(smoke_run / "reports/smoke/correspondence_paired.csv")
    versus_ransac = paired[(paired.dataset == "synthetic") & (paired.method_b == "ransac")]
    assert sorted(versus_ransac.method_a) == ["cnet", "n3net-cnet"] and (versus_ransac.ci_low > 0).all()
    assert (smoke_run / "runs/smoke/fit/correspondence/cnet-st_peters/SKIPPED").exists()
    report = (smoke_run / "reports/smoke/README.md").read_text()
    assert "## Correspondence classification" in report and "synthetic → stereo_motorcycle" in report
    assert (smoke_run / "reports/smoke/figures/correspondence_matches.png").is_file()


def test_second_repro_is_a_fast_no_op(smoke_run):
    began = time.perf_counter()
    output = shell("dvc", "repro", cwd=smoke_run).stdout
    elapsed = time.perf_counter() - began
    assert "Running stage" not in output
    assert "up to date" in shell("dvc", "status", cwd=smoke_run).stdout
    print(f"no-op dvc repro: {elapsed:.1f} s")


def test_results_travel_through_a_remote_to_a_fresh_clone(smoke_run, tmp_path):
    shell("dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"), cwd=smoke_run)
    commit_all(smoke_run, "smoke results")
    shell("dvc", "push", "--run-cache", cwd=smoke_run)
    clone = tmp_path / "clone"
    shell("git", "clone", "-q", str(smoke_run), str(clone), cwd=tmp_path)
    shell("dvc", "pull", "--run-cache", cwd=clone)
    output = shell("dvc", "repro", cwd=clone).stdout
    assert "Running stage" not in output, output[-2000:]
    assert psnr(clone, "denoise/bm3d-25", "sample_gray") == psnr(smoke_run, "denoise/bm3d-25", "sample_gray")
