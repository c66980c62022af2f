"""Colour conversions that reproduce MATLAB and Pillow bit for bit.

- ``rgb2gray_matlab``: MATLAB ``rgb2gray`` on uint8 (how DnCNN's BSD68 PNGs were made).
- ``rgb2gray_pil``: Pillow ``convert('L', (0.2989, 0.5870, 0.1140, 0))``, N3Net's gray test images.
- ``rgb2ycbcr`` / ``ycbcr2rgb``: MATLAB's BT.601 studio-swing conversion on doubles. Both sides use MATLAB's
  double convention: RGB in [0, 1]; Y in [16, 235]/255 and Cb, Cr in [16, 240]/255 (uint8 input is divided by
  255 first; ``ycbcr2rgb`` clips its result to [0, 1] like MATLAB). The SR protocol's Y on the
  0–255 scale is ``rgb2ycbcr(rgb)[..., 0] * 255`` (unrounded).
"""

from __future__ import annotations

import numpy as np

# MATLAB rgb2gray takes the first row of the inverse of the NTSC (YIQ → RGB) matrix of ``ntsc2rgb``.
_YIQ_TO_RGB = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]])
MATLAB_GRAY_WEIGHTS = np.linalg.inv(_YIQ_TO_RGB)[0]  # ≈ 0.298936, 0.587043, 0.114021

PIL_GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)

# MATLAB rgb2ycbcr: Y'CbCr (0–255) = _YCBCR_MATRIX @ RGB (0–1) + _YCBCR_OFFSET.
_YCBCR_MATRIX = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float64
)
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])


def round_half_away(x: np.ndarray) -> np.ndarray:
    """MATLAB ``round`` (ties away from zero), exact for every double."""
    lower = np.floor(np.abs(x))
    return np.copysign(lower + (np.abs(x) - lower >= 0.5), x)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {rgb.shape}")
    return rgb


def _check_uint8_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = _check_rgb(rgb)
    if rgb.dtype != np.uint8:
        raise TypeError(f"expected uint8 RGB, got {rgb.dtype}")
    return rgb


def rgb2gray_matlab(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of a uint8 H×W×3 image: weighted sum in double, rounded half away → uint8 H×W."""
    rgb = _check_uint8_rgb(rgb).astype(np.float64)
    w = MATLAB_GRAY_WEIGHTS
    gray = w[0] * rgb[..., 0] + w[1] * rgb[..., 1] + w[2] * rgb[..., 2]
    return np.clip(round_half_away(gray), 0, 255).astype(np.uint8)


def rgb2gray_pil(rgb: np.ndarray) -> np.ndarray:
    """Pillow ``convert('L', (0.2989, 0.5870, 0.1140, 0))``: float32, left to right, +0.5, floor → uint8."""
    rgb = _check_uint8_rgb(rgb).astype(np.float32)
    w = PIL_GRAY_WEIGHTS
    total = (w[0] * rgb[..., 0] + w[1] * rgb[..., 1]) + w[2] * rgb[..., 2]
    return np.clip(np.floor(total + np.float32(0.5)), 0, 255).astype(np.uint8)


def _as_unit_double(rgb: np.ndarray) -> np.ndarray:
    """uint8 → /255 (MATLAB ``im2double``); floats are taken as already in [0, 1]."""
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float64) / 255.0
    if not np.issubdtype(rgb.dtype, np.floating):
        raise TypeError(f"expected uint8 or floating-point input, got {rgb.dtype}")
    return rgb.astype(np.float64)


def rgb2ycbcr(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` of RGB in [0, 1] (uint8 is divided by 255 first) → float64 Y'CbCr in [0, 1]."""
    rgb = _as_unit_double(_check_rgb(rgb))
    m = _YCBCR_MATRIX / 255.0
    off = _YCBCR_OFFSET / 255.0
    channels = [
        m[p, 0] * rgb[..., 0] + m[p, 1] * rgb[..., 1] + m[p, 2] * rgb[..., 2] + off[p] for p in range(3)
    ]
    return np.stack(channels, axis=-1)


def ycbcr2rgb(ycbcr: np.ndarray) -> np.ndarray:
    """MATLAB ``ycbcr2rgb`` on doubles: Y'CbCr in [0, 1] → float64 RGB, clipped to [0, 1] as MATLAB does."""
    ycbcr = _as_unit_double(_check_rgb(ycbcr))
    inverse = np.linalg.inv(_YCBCR_MATRIX) * 255.0
    rgb = (ycbcr - _YCBCR_OFFSET / 255.0) @ inverse.T
    return np.clip(rgb, 0.0, 1.0)
