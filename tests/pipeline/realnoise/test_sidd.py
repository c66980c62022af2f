"""SIDD block files (MATLAB v5 and v7.3), block-wise denoising and the Kaggle submission CSV."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io

from pipeline.realnoise.sidd import (
    BENCHMARK_NOISY,
    VALIDATION_GT,
    VALIDATION_NOISY,
    denoise_blocks,
    read_benchmark,
    read_blocks,
    read_submission,
    read_validation,
    write_submission,
)

SHAPE = (3, 4, 8, 6, 3)  # images × blocks × H × W × RGB, a tiny stand-in for 40×32×256×256×3


def _blocks(seed: int, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _save_v5(path: Path, blocks: np.ndarray) -> None:
    scipy.io.savemat(path, {path.stem: blocks})


def _save_v73(path: Path, blocks: np.ndarray) -> None:
    with h5py.File(path, "w", userblock_size=512) as f:
        f[path.stem] = blocks.T  # MATLAB v7.3 stores arrays transposed


@pytest.mark.parametrize("save", [_save_v5, _save_v73])
def test_validation_pairs_are_read_in_either_mat_version(
    tmp_path: Path, save: Callable[[Path, np.ndarray], None]
) -> None:
    noisy, gt = _blocks(0), _blocks(1)
    save(tmp_path / VALIDATION_NOISY, noisy)
    save(tmp_path / VALIDATION_GT, gt)
    read_noisy, read_gt = read_validation(tmp_path)
    assert read_noisy.dtype == np.uint8 and read_noisy.shape == SHAPE
    np.testing.assert_array_equal(read_noisy, noisy)
    np.testing.assert_array_equal(read_gt, gt)


def test_benchmark_blocks_and_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=BENCHMARK_NOISY):
        read_benchmark(tmp_path)
    _save_v73(tmp_path / BENCHMARK_NOISY, _blocks(2))
    np.testing.assert_array_equal(read_benchmark(tmp_path), _blocks(2))
    scipy.io.savemat(tmp_path / "Renamed.mat", {"BenchmarkNoisyBlocksSrgb": _blocks(2)})
    with pytest.raises(ValueError, match=r"'Renamed'.*BenchmarkNoisyBlocksSrgb"):
        read_blocks(tmp_path / "Renamed.mat")


def test_submission_csv_round_trip_is_row_major(tmp_path: Path) -> None:
    blocks = _blocks(3)
    path = write_submission(blocks, tmp_path / "SubmitSrgb.csv")
    assert path.read_text().splitlines()[0] == "ID,BLOCK"
    table = pd.read_csv(path)
    assert table["ID"].tolist() == list(range(3 * 4))
    row = 1 * 4 + 2  # image 1, block 2
    decoded = np.frombuffer(base64.b64decode(table["BLOCK"][row]), dtype=np.uint8).reshape(SHAPE[2:])
    np.testing.assert_array_equal(decoded, blocks[1, 2])
    np.testing.assert_array_equal(read_submission(path, SHAPE), blocks)


def test_raw_float_blocks_keep_their_dtype(tmp_path: Path) -> None:
    blocks = np.random.default_rng(4).uniform(size=(2, 3, 4, 4)).astype(np.float32)
    path = write_submission(blocks, tmp_path / "SubmitRaw.csv")
    np.testing.assert_array_equal(read_submission(path, blocks.shape, np.float32), blocks)


def test_denoise_blocks_works_in_unit_range_and_returns_uint8() -> None:
    noisy = _blocks(5)
    seen: list[float] = []

    def invert(block: np.ndarray) -> np.ndarray:
        seen.append(float(block.max()))
        return 1.0 - block

    out = denoise_blocks(noisy, invert)
    assert out.dtype == np.uint8 and out.shape == SHAPE and len(seen) == 3 * 4
    assert max(seen) <= 1.0
    np.testing.assert_array_equal(out, 255 - noisy)
    np.testing.assert_array_equal(denoise_blocks(noisy, lambda block: block + 1.0), np.full(SHAPE, 255))
    with pytest.raises(ValueError, match="shape"):
        denoise_blocks(noisy, lambda block: block[:1])


def test_submit_sidd_writes_the_csv_of_the_denoised_blocks(tmp_path: Path, monkeypatch) -> None:
    from click.testing import CliRunner

    from pipeline.cli import main

    blocks = _blocks(7)
    _save_v5(tmp_path / f"{BENCHMARK_NOISY}", blocks)
    (tmp_path / "params.yaml").write_text((Path(__file__).parents[3] / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["submit", "sidd", str(tmp_path), "--method", "noisy", "-o", "sub.csv"])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read_submission(tmp_path / "sub.csv", blocks.shape), blocks)
