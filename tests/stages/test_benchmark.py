"""Stage ``benchmark``: profiles that do not list a benchmark write a skip marker and time nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from click.testing import CliRunner

from stages.benchmark import main

REPO = Path(__file__).parents[2]


def test_a_profile_without_the_benchmark_writes_a_skip_marker(tmp_path, monkeypatch):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["profiles"]["smoke"]["benchmarks"] == []
    result = CliRunner().invoke(main, ["n3block"])
    assert result.exit_code == 0, result.output
    marker = json.loads((tmp_path / "reports/benchmarks/smoke/n3block.json").read_text())
    assert marker == {"profile": "smoke", "skipped": "benchmark n3block is not in this profile"}
    assert CliRunner().invoke(main, ["speed"]).exit_code == 2  # not a benchmark: click's usage error
