"""MATLAB bicubic imresize: its rules, its published outputs, and the Set5 bicubic baseline."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pipeline.protocols.color import rgb2ycbcr, round_half_away
from pipeline.protocols.metrics import psnr
from pipeline.protocols.resize import cubic, imresize, weight_matrix


def test_cubic_kernel_values() -> None:
    np.testing.assert_allclose(cubic(np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])), [1, 0.5625, 0, -0.0625, 0, 0])


@pytest.mark.parametrize(("n_in", "n_out", "scale"), [(10, 20, 2.0), (9, 3, 1 / 3), (7, 5, 5 / 7)])
def test_weight_rows_sum_to_one(n_in: int, n_out: int, scale: float) -> None:
    matrix = weight_matrix(n_in, n_out, scale)
    assert matrix.shape == (n_out, n_in)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)


def test_output_size_follows_matlab_ceil_rule() -> None:
    image = np.zeros((5, 7))
    assert imresize(image, 0.5).shape == (3, 4)
    assert imresize(image, 1 / 3).shape == (2, 3)
    assert imresize(np.zeros((5, 7, 3)), output_shape=(8, 2)).shape == (8, 2, 3)


def test_scale_or_output_shape_exactly_one() -> None:
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4)))
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4)), 2.0, (8, 8))


def test_constant_stays_constant_and_scale_one_is_identity() -> None:
    np.testing.assert_allclose(imresize(np.full((13, 9), 0.7), 1 / 3), 0.7, atol=1e-12)
    image = np.random.default_rng(0).random((11, 6))
    np.testing.assert_allclose(imresize(image, 1.0), image, atol=1e-12)


def test_upscaling_reproduces_a_ramp_away_from_borders() -> None:
    ramp = np.tile(np.arange(20.0), (20, 1))
    up = imresize(ramp, 2.0)
    expected = np.arange(1, 41) / 2.0 + 0.5 * (1 - 1 / 2.0) - 1  # output pixel centres in input coordinates
    np.testing.assert_allclose(up[:, 6:-6], np.tile(expected[6:-6], (40, 1)), atol=1e-12)


def test_channels_are_resized_independently() -> None:
    image = np.random.default_rng(1).random((12, 10, 3))
    out = imresize(image, 0.5)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], imresize(image[..., c], 0.5), atol=1e-14)


def test_fast_enough_for_512() -> None:
    image = np.random.default_rng(2).random((512, 512))
    start = time.perf_counter()
    imresize(imresize(image, 1 / 3), 3.0)
    assert time.perf_counter() - start < 1.0


def _set5_mat_files(mirror: Path) -> list[Path]:
    files = sorted((mirror / "datasets" / "set5_matlab_bicubic").glob("*_GT_x[234].mat"))
    assert len(files) == 12
    return files


def _assert_matches_matlab(ours: np.ndarray, matlab: np.ndarray) -> None:
    assert ours.shape == matlab.shape
    assert np.abs(ours - matlab).mean() <= 1e-3  # the acceptance bound; measured: ~1e-14
    assert np.abs(ours - matlab).max() <= 1e-9
    assert (round_half_away(ours) == round_half_away(matlab)).mean() >= 0.999


@pytest.mark.mirror
def test_imresize_matches_matlab_outputs(mirror: Path) -> None:
    for path in _set5_mat_files(mirror):
        scale = int(path.stem[-1])
        mat = scipy.io.loadmat(path)
        low = imresize(rgb2ycbcr(mat["im_gt"]), 1 / scale)
        _assert_matches_matlab(low[..., 0] * 255, mat["im_l_y"])
        _assert_matches_matlab(imresize(low, float(scale))[..., 0] * 255, mat["im_b_y"])


def _set5_bicubic_psnr(mirror: Path, scale: int, *, srcnn_rounding: bool) -> float:
    """Mean Set5 PSNR of bicubic ×scale on Y; ``srcnn_rounding`` rounds Y and the output to 8 bits."""
    values = []
    for path in sorted((mirror / "datasets" / "set5").glob("*_GT.bmp")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        height, width = (size - size % scale for size in rgb.shape[:2])
        y = rgb2ycbcr(rgb[:height, :width])[..., 0] * 255
        if srcnn_rounding:
            y = round_half_away(y)
        up = imresize(imresize(y, 1 / scale), float(scale))
        values.append(psnr(up, y, data_range=255, crop_border=scale, quantize=srcnn_rounding))
    assert len(values) == 5
    return float(np.mean(values))


@pytest.mark.mirror
@pytest.mark.parametrize(
    ("scale", "published", "unrounded"), [(2, 33.66, 33.69), (3, 30.39, 30.41), (4, 28.42, 28.43)]
)
def test_set5_bicubic_baseline(mirror: Path, scale: int, published: float, unrounded: float) -> None:
    assert _set5_bicubic_psnr(mirror, scale, srcnn_rounding=True) == pytest.approx(published, abs=0.01)
    assert _set5_bicubic_psnr(mirror, scale, srcnn_rounding=False) == pytest.approx(unrounded, abs=0.01)
