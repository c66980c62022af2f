"""PSNR and SSIM as the denoising and SR literature computes them.

- Images share one scale, ``[0, data_range]`` (1 for n3bench's float images, 255 for 8-bit values).
- ``quantize=True`` (the default) first clips the estimate to ``[0, data_range]`` and rounds it to the 8-bit
  grid, like MATLAB ``im2uint8`` in DnCNN/KAIR; the reference is used as given. N3Net's own protocol is
  ``quantize=False`` (raw network output).
- ``crop_border`` removes that many pixels from every side of both images before comparing.
- For multi-channel (H×W×C) images the PSNR's MSE is over all values (= the mean of the per-channel MSEs).
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

from pipeline.protocols.color import round_half_away


def _prepare(
    estimate: np.ndarray, reference: np.ndarray, data_range: float, crop_border: int, quantize: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64, the estimate quantised if asked, borders cropped."""
    estimate = np.asarray(estimate, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if estimate.shape != reference.shape:
        raise ValueError(f"shape mismatch: estimate {estimate.shape} vs reference {reference.shape}")
    if estimate.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D or H×W×C image, got shape {estimate.shape}")
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    if crop_border < 0 or 2 * crop_border >= min(estimate.shape[:2]):
        raise ValueError(f"crop_border {crop_border} does not fit an image of shape {estimate.shape}")
    if quantize:
        steps = 255.0 / data_range
        estimate = round_half_away(np.clip(estimate, 0.0, data_range) * steps) / steps
    if crop_border:
        window = (slice(crop_border, -crop_border), slice(crop_border, -crop_border))
        estimate, reference = estimate[window], reference[window]
    return estimate, reference


def psnr(
    estimate: np.ndarray,
    reference: np.ndarray,
    *,
    data_range: float = 1.0,
    crop_border: int = 0,
    quantize: bool = True,
) -> float:
    """10·log10(data_range² / MSE) in dB; ``inf`` for identical images."""
    estimate, reference = _prepare(estimate, reference, data_range, crop_border, quantize)
    mse = float(np.mean((estimate - reference) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def ssim(
    estimate: np.ndarray,
    reference: np.ndarray,
    *,
    data_range: float = 1.0,
    crop_border: int = 0,
    quantize: bool = True,
) -> float:
    """Wang et al.'s SSIM (MATLAB ``ssim_index``: 11×11 Gaussian, σ = 1.5, valid window) on the 0–255 scale.

    H×W×C images are compared per channel and the channel SSIMs averaged.
    """
    estimate, reference = _prepare(estimate, reference, data_range, crop_border, quantize)
    scale = 255.0 / data_range
    return float(
        structural_similarity(
            estimate * scale,
            reference * scale,
            data_range=255.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            K1=0.01,
            K2=0.03,
            channel_axis=-1 if estimate.ndim == 3 else None,
        )
    )
