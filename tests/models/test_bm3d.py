"""BM3D: gray and colour (CBM3D) denoising with a fixed or estimated σ, the process pool, the registry entry."""

from __future__ import annotations

import numpy as np
import pytest

from models.bm3d import BM3D, estimate_noise_sigma
from pipeline.methods import METHODS
from pipeline.realnoise.cc15 import psnr_rgb


def _scene(size: int = 32) -> np.ndarray:
    """A smooth colour image in [0.2, 0.8]: gradients per channel."""
    ramp = np.linspace(0.2, 0.8, size)
    return np.stack([np.add.outer(ramp, ramp) / 2, np.outer(ramp, np.ones(size)), np.outer(np.ones(size), ramp)], -1)


def _noisy(sigma: float, seed: int = 0, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    clean = _scene(size)
    noise = np.random.default_rng(seed).normal(0, sigma / 255, clean.shape)
    return clean, (clean + noise).astype(np.float32)


def test_registered_for_gaussian_and_real_noise() -> None:
    assert METHODS.get("bm3d") is BM3D
    assert BM3D.tasks == ("denoise", "realnoise")
    assert not BM3D.trainable


@pytest.mark.parametrize("sigma", [5.0, 15.0])
def test_estimate_noise_sigma_recovers_white_noise(sigma: float) -> None:
    _, noisy = _noisy(sigma, size=128)
    assert estimate_noise_sigma(noisy) == pytest.approx(sigma, rel=0.1)


@pytest.mark.parametrize("setting", [0, 20])
def test_restore_denoises_with_fixed_or_estimated_sigma(setting: int) -> None:
    clean, noisy = _noisy(20.0)
    estimate = BM3D().restore(noisy, setting)
    assert estimate.shape == noisy.shape and estimate.dtype == np.float32
    assert psnr_rgb(estimate, clean, 1.0) > psnr_rgb(noisy, clean, 1.0) + 5


def test_gray_images_go_through_plain_bm3d() -> None:
    clean, noisy = _noisy(20.0)
    estimate = BM3D().restore(noisy[..., 0], 20)
    assert estimate.shape == clean.shape[:2]
    assert psnr_rgb(estimate, clean[..., 0], 1.0) > psnr_rgb(noisy[..., 0], clean[..., 0], 1.0) + 5


def test_restore_rejects_other_channel_counts() -> None:
    with pytest.raises(ValueError, match="RGB"):
        BM3D().restore(np.zeros((32, 32, 4), dtype=np.float32), 10)


def test_restore_batch_in_a_pool_matches_one_by_one() -> None:
    images = [_noisy(10.0, seed)[1] for seed in range(2)]
    pooled = BM3D(workers=2).restore_batch(images, 0)
    for image, output in zip(images, pooled, strict=True):
        np.testing.assert_allclose(output, BM3D().restore(image, 0), atol=1e-5)  # bm3d is not bit-reproducible


def test_runs_are_bit_identical_and_single_threaded() -> None:
    """bm3d's default threading changes the last digits between runs; n3bench runs each image on one thread."""
    from models.bm3d import single_threaded

    assert single_threaded("np").num_threads == 1
    rng = np.random.default_rng(5)
    noisy = (rng.random((48, 40)) * 0.2 + 0.4 + rng.standard_normal((48, 40)) * 0.1).astype(np.float32)
    method = METHODS.get("bm3d")(workers=2)
    first, second = method.restore_batch([noisy, noisy], 25)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, method.restore(noisy, 25))
