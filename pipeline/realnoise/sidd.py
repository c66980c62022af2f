"""SIDD sRGB blocks: read the validation pairs and benchmark inputs, write the Kaggle submission CSV.

Each ``.mat`` file holds one array named after the file stem, images × blocks × block shape (sRGB: uint8
40×32×256×256×3). Files may be MATLAB v5 (read with scipy) or v7.3 (HDF5, stored transposed).

The submission CSV has the columns ``ID`` and ``BLOCK``: ``ID`` counts the blocks row-major over
images × blocks, ``BLOCK`` is the base64 of the block's raw C-order bytes, with the input's dtype and shape.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.io

SIDD_SITE = "https://abdokamel.github.io/sidd/"
VALIDATION_NOISY = "ValidationNoisyBlocksSrgb.mat"
VALIDATION_GT = "ValidationGtBlocksSrgb.mat"
BENCHMARK_NOISY = "BenchmarkNoisyBlocksSrgb.mat"


def read_blocks(path: Path) -> np.ndarray:
    """The array named after the file's stem, as images × blocks × block shape (v5 or v7.3 ``.mat``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SIDD file {path} is missing; the SIDD downloads are listed at {SIDD_SITE}")
    key = path.stem
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            _require_key(path, key, list(f.keys()))
            blocks = np.asarray(f[key]).T
    else:
        contents = scipy.io.loadmat(path)
        _require_key(path, key, [k for k in contents if not k.startswith("__")])
        blocks = contents[key]
    if blocks.ndim < 3:
        raise ValueError(f"{path}: expected images × blocks × block, got shape {blocks.shape}")
    return np.ascontiguousarray(blocks)


def read_validation(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The validation (noisy, ground truth) sRGB blocks of the folder ``root``."""
    noisy, gt = read_blocks(Path(root) / VALIDATION_NOISY), read_blocks(Path(root) / VALIDATION_GT)
    if noisy.shape != gt.shape:
        raise ValueError(f"SIDD validation shapes differ: noisy {noisy.shape}, ground truth {gt.shape}")
    return noisy, gt


def read_benchmark(root: Path) -> np.ndarray:
    """The benchmark's noisy sRGB blocks (their ground truth is private)."""
    return read_blocks(Path(root) / BENCHMARK_NOISY)


def denoise_blocks(noisy: np.ndarray, denoiser: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``denoiser`` block by block on float32 in [0, 1]; the result keeps the input's dtype and shape.

    uint8 input is divided by 255, and the output is clipped, rounded and stored as uint8 again.
    """
    out = np.empty_like(noisy)
    scale = 255.0 if noisy.dtype == np.uint8 else 1.0
    for index in np.ndindex(noisy.shape[:2]):
        result = np.asarray(denoiser(noisy[index].astype(np.float32) / np.float32(scale)))
        if result.shape != noisy[index].shape:
            raise ValueError(
                f"the denoiser returned shape {result.shape} for a block of {noisy[index].shape}"
            )
        out[index] = np.clip(np.rint(result * scale), 0, 255) if noisy.dtype == np.uint8 else result
    return out


def write_submission(blocks: np.ndarray, path: Path) -> Path:
    """Write the Kaggle submission CSV of images × blocks × block ``blocks``."""
    flat = blocks.reshape(-1, *blocks.shape[2:])
    encoded = [base64.b64encode(np.ascontiguousarray(block).tobytes()).decode("ascii") for block in flat]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"ID": np.arange(len(flat)), "BLOCK": encoded}).to_csv(path, index=False)
    return path


def read_submission(path: Path, shape: tuple[int, ...], dtype: npt.DTypeLike = np.uint8) -> np.ndarray:
    """Decode a submission CSV into a read-only array of ``shape`` (images × blocks × block) and ``dtype``."""
    table = pd.read_csv(path)
    if list(table.columns) != ["ID", "BLOCK"] or not np.array_equal(table["ID"], np.arange(len(table))):
        raise ValueError(f"{path} is not a submission: expected columns ID, BLOCK with IDs 0…N−1")
    data = b"".join(base64.b64decode(block) for block in table["BLOCK"])
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _require_key(path: Path, key: str, found: list[str]) -> None:
    if key not in found:
        raise ValueError(f"{path} has no array {key!r} (the key must equal the file stem); found {found}")
