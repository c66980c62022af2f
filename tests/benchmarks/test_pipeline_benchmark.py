"""The pipeline benchmark: a tiny run prints the table and writes every row with its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]


def test_tiny_run_writes_times_and_ratios(tmp_path):
    out = tmp_path / "pipeline.json"
    command = [sys.executable, "-m", "benchmarks.pipeline", "--images", "2", "--repeats", "1", "--shape", "96", "96",
               "--json", str(out)]
    done = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True, timeout=600)
    rows = {row["case"]: row for row in json.loads(out.read_text())}
    assert set(rows) >= {"bm3d workers=1", "dncnn-s", "n3net", "bm3d-speedup", "n3net/dncnn"}
    assert all(row["seconds"] > 0 for row in rows.values() if "seconds" in row)
    assert rows["n3net/dncnn"]["ratio"] == rows["n3net"]["seconds"] / rows["dncnn-s"]["seconds"]
    assert rows["dncnn-s"]["machine"]["images"] == "2 × camera crops"
    assert "| bm3d-speedup |" in done.stdout
