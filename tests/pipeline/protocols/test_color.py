"""Colour conversions against MATLAB's published outputs and Pillow itself."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pipeline.protocols.color import (
    rgb2gray_matlab,
    rgb2gray_pil,
    rgb2ycbcr,
    round_half_away,
    ycbcr2rgb,
)


def _random_rgb(seed: int, shape: tuple[int, int] = (40, 30)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*shape, 3), dtype=np.uint8)


def _bsd68_pairs(mirror: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(RGB JPG decoded by Pillow, DnCNN's gray PNG) for all 68 images."""
    root = mirror / "datasets"
    with open(root / "bsd68_to_bsds500.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert len(rows) == 68
    return [
        (
            np.asarray(Image.open(root / "bsd68_rgb" / row["bsds500_val_id"]).convert("RGB")),
            np.asarray(Image.open(root / "bsd68" / row["dncnn_bsd68"])),
        )
        for row in rows
    ]


def test_round_half_away_breaks_ties_away_from_zero() -> None:
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999999999999994, 254.5, 3.2])
    np.testing.assert_array_equal(round_half_away(x), [1, 2, 3, -1, -3, 0, 255, 3])


def test_gray_conversions_keep_gray_pixels_and_extremes() -> None:
    levels = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)
    np.testing.assert_array_equal(rgb2gray_matlab(levels)[:, 0], np.arange(256))
    np.testing.assert_array_equal(rgb2gray_pil(levels)[:, 0], np.arange(256))


def test_gray_conversions_reject_non_uint8_or_non_rgb() -> None:
    with pytest.raises(TypeError):
        rgb2gray_matlab(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        rgb2gray_pil(np.zeros((4, 4), dtype=np.uint8))


def test_rgb2gray_pil_equals_pillow_on_random_pixels() -> None:
    rgb = _random_rgb(0, (200, 300))
    expected = np.asarray(Image.fromarray(rgb).convert("L", (0.2989, 0.5870, 0.1140, 0)))
    np.testing.assert_array_equal(rgb2gray_pil(rgb), expected)


@pytest.mark.mirror
def test_gray_conversions_on_bsd68(mirror: Path) -> None:
    differs_from_dncnn = 0
    for rgb, dncnn_png in _bsd68_pairs(mirror):
        np.testing.assert_array_equal(rgb2gray_matlab(rgb), dncnn_png)
        pillow = np.asarray(Image.fromarray(rgb).convert("L", (0.2989, 0.5870, 0.1140, 0)))
        n3net = rgb2gray_pil(rgb)
        np.testing.assert_array_equal(n3net, pillow)
        assert np.abs(n3net.astype(int) - dncnn_png).max() <= 1
        differs_from_dncnn += bool((n3net != dncnn_png).any())
    assert differs_from_dncnn == 61  # N3Net's conversion is not DnCNN's (Pillow's default differs on 39)


def test_rgb2ycbcr_known_values_and_range() -> None:
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], dtype=np.uint8)
    ycbcr = rgb2ycbcr(rgb) * 255
    np.testing.assert_allclose(ycbcr[0, 0], [16, 128, 128], atol=1e-12)
    np.testing.assert_allclose(ycbcr[0, 1], [235, 128, 128], atol=1e-12)
    np.testing.assert_allclose(ycbcr[0, 2], [81.481, 90.203, 240], atol=1e-12)
    assert ycbcr.dtype == np.float64


def test_rgb2ycbcr_uint8_equals_float_and_inverts() -> None:
    rgb = _random_rgb(1)
    ycbcr = rgb2ycbcr(rgb)
    np.testing.assert_allclose(ycbcr, rgb2ycbcr(rgb / 255.0), atol=1e-15)
    np.testing.assert_allclose(ycbcr2rgb(ycbcr) * 255, rgb, atol=1e-10)


def test_ycbcr2rgb_clips_like_matlab() -> None:
    out_of_gamut = np.array([[[16, 240, 16], [235, 16, 240]]]) / 255.0
    rgb = ycbcr2rgb(out_of_gamut)
    assert rgb.min() == 0.0 and rgb.max() == 1.0


@pytest.mark.mirror
def test_ycbcr_against_matlab(mirror: Path) -> None:
    files = sorted((mirror / "datasets" / "set5_matlab_bicubic").glob("*.mat"))
    assert len(files) == 12
    for path in files:
        mat = scipy.io.loadmat(path)
        np.testing.assert_allclose(rgb2ycbcr(mat["im_gt"])[..., 0] * 255, mat["im_gt_y"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(ycbcr2rgb(mat["im_l_ycbcr"]) * 255, mat["im_l"], rtol=0, atol=1e-9)
