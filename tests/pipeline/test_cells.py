"""One evaluation cell end to end on the bundled sample data: resumable, reproducible, code-aware caching."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline import paths
from pipeline.cells import evaluate_cell, method_fingerprint, method_source_files
from pipeline.config import load_params
from pipeline.data.catalog import DATASETS
from pipeline.data.prepare import prepare
from pipeline.evaluate import EvaluationError, summarise
from pipeline.fit import make_method
from pipeline.methods import METHODS, Method

REPO = Path(__file__).parents[2]


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    prepare(DATASETS.get("sample_gray"), paths.prepared("sample_gray"), raw=paths.raw())
    return tmp_path


def summary_bytes(rows) -> bytes:
    return json.dumps(summarise(rows), sort_keys=True).encode()


def test_a_second_identical_run_gives_identical_metrics(project):
    params = load_params()
    first = evaluate_cell(params, "denoise", "noisy", 25, project / "out1")
    shutil.rmtree(paths.RUNS / "smoke" / "scratch")  # no cache: a genuine recomputation
    second = evaluate_cell(params, "denoise", "noisy", 25, project / "out2")
    assert summary_bytes(first) == summary_bytes(second)
    assert first["psnr"].tolist() == second["psnr"].tolist()
    assert sorted(path.name for path in (project / "out1" / "examples").iterdir()) == [
        "sample_gray__camera.png", "sample_gray__camera__degraded.png", "sample_gray__camera__reference.png"]


class Broken(Method):
    name, tasks = "broken", ("denoise",)

    def restore(self, image, setting):
        return np.full_like(image, np.nan) if self.hparams.get("nan") else image[:-1]


@pytest.mark.parametrize(("nan", "message"), [(True, "returned NaN or inf for sample_gray/"),
                                               (False, r"returned shape \(127, 128\) for sample_gray/")])
def test_bad_outputs_name_the_method_and_the_image(project, monkeypatch, nan, message):
    METHODS.add("broken", Broken)
    try:
        params = load_params()
        params.raw["methods"]["broken"] = {"nan": nan}
        with pytest.raises(EvaluationError, match=f"method 'broken' {message}"):
            evaluate_cell(params, "denoise", "broken", 25, None)
    finally:
        METHODS.remove("broken")


def test_the_cache_key_follows_the_code_of_the_method_and_its_building_blocks():
    params = load_params(REPO / "params.yaml")
    n3net = make_method("n3net", params, "denoise")
    assert method_fingerprint(n3net) != method_fingerprint(make_method("dncnn-s", params, "denoise"))
    assert method_fingerprint(n3net) == method_fingerprint(make_method("n3net", params, "denoise"))
    assert {path.name for path in method_source_files(n3net)} == {"n3net.py", "n3block.py", "dncnn.py"}
    assert [path.name for path in method_source_files(make_method("bm3d", params, "denoise"))] == ["bm3d.py"]
