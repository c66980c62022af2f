"""The correspondence stages of the pipeline: prepare, fit and evaluate a cell, skip markers, the report section."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from pipeline.correspondence.report import FIGURE, section
from stages import evaluate, fit, prepare
from stages._common import SKIP_NOTE

REPO = Path(__file__).parents[3]
TINY = {"depth": 2, "channels": 8, "n3_hidden": 8}


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project folder whose smoke profile trains tiny networks on a few small synthetic pairs."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    smoke = params["profiles"]["smoke"]
    smoke["methods"].update({"cnet": TINY, "n3net-cnet": TINY})
    smoke["correspondence"].update(
        datasets=["synthetic"], cells={"synthetic": ["synthetic"]},
        synthetic={"train": 8, "val": 2, "test": 4, "n_matches": 64},
        fit={**smoke["correspondence"]["fit"], "steps": 2, "batch_size": 4, "checkpoint_every": 1, "validate_every": 2},
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "paper_tables.yaml").write_bytes((REPO / "reports" / "paper_tables.yaml").read_bytes())
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


def run(command, *args: str) -> str:
    result = CliRunner().invoke(command.main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def metrics(method: str, trainset: str) -> dict:
    return json.loads(Path(f"reports/metrics/smoke/correspondence/{method}-{trainset}.json").read_text())


def test_cells_outside_the_profile_write_the_skip_marker(project):
    run(prepare, "reichstag")
    assert (project / "data/correspondence/reichstag" / SKIP_NOTE).exists()
    run(fit, "correspondence", "cnet", "st_peters")
    assert (project / "runs/smoke/fit/correspondence/cnet-st_peters" / SKIP_NOTE).exists()
    run(evaluate, "correspondence", "cnet", "st_peters")
    assert "skipped" in metrics("cnet", "st_peters")


def test_prepare_fit_evaluate_and_report_a_profile(project):
    run(prepare, "synthetic")
    for method in ("ransac", "cnet", "n3net-cnet"):
        run(fit, "correspondence", method, "synthetic")
        run(evaluate, "correspondence", method, "synthetic")
    assert (project / "runs/smoke/fit/correspondence/cnet-synthetic/model.pt").is_file()
    assert json.loads((project / "runs/smoke/fit/correspondence/ransac-synthetic/model.json").read_text())[
        "source"] == "classical"
    summary = metrics("n3net-cnet", "synthetic")
    assert summary["train"] == "synthetic" and summary["synthetic"]["n_pairs"] == 4
    assert {"map5", "map10", "map20", "precision", "recall", "f1", "n_degenerate"} <= set(summary["synthetic"])
    assert summary["synthetic"]["protocol"] == "ransac" and summary["synthetic"]["ransac_threshold"] == 0.01
    rows = pd.read_parquet("runs/smoke/eval/correspondence/cnet-synthetic/per_pair.parquet")
    assert len(rows) == 4 and set(rows.train) == {"synthetic"}

    lines, files = section("smoke", project, resamples=200, confidence=0.9, seed=0)
    text = "\n".join(lines)
    assert "| synthetic → synthetic | n3net-cnet | — |" in text  # paper columns empty, measured filled
    assert "| synthetic → synthetic | `n3net-cnet` | `cnet` | 4 |" in text
    assert Image.open(io.BytesIO(files[FIGURE])).format == "PNG"
    table = pd.read_csv(io.BytesIO(files["correspondence.csv"]))
    assert sorted(table.method) == ["cnet", "n3net-cnet", "ransac"]


def test_a_learned_cell_without_its_fit_says_what_to_run(project):
    run(prepare, "synthetic")
    result = CliRunner().invoke(evaluate.main, ["correspondence", "cnet", "synthetic"])
    assert result.exit_code == 1 and "run the fit stage of this cell first" in result.output
