"""The N³ block benchmark: its dense reference computes the block, and a tiny run writes the promised JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.n3block import candidate_index, dense_block, matching_flops
from models.n3block import N3Block

REPO = Path(__file__).parents[2]


@pytest.mark.parametrize("config", [{}, {"embedding": "identity", "temperature": "scalar", "distance_bn": False}])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_dense_reference_equals_the_block(config, mode):
    torch.manual_seed(0)
    block = getattr(N3Block(**config).double(), mode)()
    y = torch.rand(1, 8, 83, 96, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(dense_block(block, y), block(y), rtol=0, atol=1e-10)


def test_candidates_are_the_shifted_window_without_the_query():
    index = candidate_index(16, 17, 15)
    assert index.shape == (16 * 17, 224)
    assert set(index[0].tolist()) == {r * 17 + c for r in range(15) for c in range(15)} - {0}
    assert not (index == torch.arange(16 * 17)[:, None]).any()


def test_floor_flops_follow_the_documented_formula():
    assert matching_flops(N3Block(), 512, 512) == 102 * 102 * 224 * 12_800  # 512 pads to 515: 102 patches a side


def test_tiny_run_writes_every_case_with_the_required_keys(tmp_path):
    out = tmp_path / "n3block.json"
    command = [sys.executable, "-m", "benchmarks.n3block", "--sizes", "96", "--repeats", "1", "--json", str(out)]
    command += ["--network-size", "96", "96", "--gemm-side", "256"]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True, timeout=600)
    rows = json.loads(out.read_text())
    assert {(r["impl"], r["config"], r["pass"]) for r in rows if r["size"] == "96x96"} >= {
        (impl, config, pass_)
        for impl in ("dense", "n3block")
        for config in ("paper", "matching")
        for pass_ in ("fwd", "fwd+bwd")
    }
    assert {r["impl"] for r in rows} == {"dense", "n3block", "dncnn", "n3net"}
    for row in rows:
        assert {"impl", "size", "pass", "seconds", "floor_ratio", "peak_mib"} <= row.keys()
        assert row["seconds"] > 0 and row["floor_ratio"] > 0 and row["peak_mib"] >= 0, row
    assert all(row["dense_ratio"] > 0 and row["lean"] is False for row in rows if row["impl"] == "n3block")
