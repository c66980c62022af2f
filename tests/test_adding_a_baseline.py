"""The README's "Adding a baseline", done literally: one module in models/ and one entry in params.yaml, then the
method is in the DVC matrix, in the evaluation output, in the report and in `dvc metrics diff`."""

from __future__ import annotations

import json

import pytest
from ruamel.yaml import YAML

from tests.conftest import commit_all, shell

pytestmark = pytest.mark.slow

TOY_METHOD = '''
from scipy.ndimage import gaussian_filter

from pipeline.methods import METHODS, Method


@METHODS.register("gaussian")
class GaussianFilter(Method):
    name, tasks = "gaussian", ("denoise",)

    def restore(self, image, setting):
        return gaussian_filter(image, self.hparams.get("width", 1.0))
'''


def add_to_params(project, width: float) -> None:
    yaml = YAML()
    path = project / "params.yaml"
    params = yaml.load(path.read_text())
    if "gaussian" not in params["denoise"]["methods"]:
        params["denoise"]["methods"].append("gaussian")
        params["profiles"]["smoke"]["denoise"]["methods"].append("gaussian")
    params["methods"]["gaussian"] = {"width": width}
    with path.open("w") as handle:
        yaml.dump(params, handle)


def test_a_toy_baseline_flows_through_the_pipeline(copy_repository):
    project = copy_repository()
    (project / "models" / "gaussian.py").write_text(TOY_METHOD)
    add_to_params(project, 1.0)

    stages = shell("dvc", "stage", "list", cwd=project).stdout
    assert "evaluate_denoise@gaussian-25" in stages and "fit_denoise@gaussian-50" in stages
    shell("dvc", "repro", "evaluate_denoise@gaussian-25", "evaluate_denoise@noisy-25", cwd=project)
    metrics = project / "reports/metrics/smoke/denoise"
    first = json.loads((metrics / "gaussian-25.json").read_text())["sample_gray"]
    noisy = json.loads((metrics / "noisy-25.json").read_text())["sample_gray"]
    assert first["n_images"] == 4 and first["psnr"] > noisy["psnr"] + 2  # smoothing beats the noisy input

    shell("n3bench", "report", cwd=project)
    report = (project / "reports/smoke/README.md").read_text()
    assert "gaussian" in report

    commit_all(project, "gaussian baseline")
    add_to_params(project, 2.0)
    status = shell("dvc", "status", cwd=project).stdout
    assert "evaluate_denoise@gaussian-25" in status and "evaluate_denoise@noisy-25" not in status
    shell("dvc", "repro", "evaluate_denoise@gaussian-25", cwd=project)
    diff = shell("dvc", "metrics", "diff", "--json", cwd=project).stdout
    changed = json.loads(diff)
    assert any("gaussian-25" in path for path in changed), changed
    assert not any("noisy-25" in path for path in changed), changed
