"""Seeded Gaussian noise: reproducible, keyed, independent of order, with the right level."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.protocols.noise import add_gaussian_noise, noise_rng

CLEAN = np.full((64, 48), 0.5, dtype=np.float32)


def _noisy(image: str = "01", sigma: float = 25, **kwargs: object) -> np.ndarray:
    return add_gaussian_noise(CLEAN, sigma, dataset="set12", image=image, **kwargs)


def test_noise_rng_is_deterministic_and_keyed() -> None:
    first = noise_rng("gaussian", "set12", "01", 25).random(4)
    np.testing.assert_array_equal(first, noise_rng("gaussian", "set12", "01", 25).random(4))
    np.testing.assert_array_equal(first, noise_rng("gaussian", "set12", "01", 25.0).random(4))
    for other in [
        ("gaussian", "set12", "01", 15),
        ("gaussian", "set12", "1", 25),
        ("gaussian", "set12", "01"),
    ]:
        assert not np.array_equal(first, noise_rng(*other).random(4))


def test_noise_rng_keys_are_unambiguous() -> None:
    assert noise_rng("1").random() != noise_rng(1).random()
    assert noise_rng("a", "b").random() != noise_rng("a,b").random()


def test_noise_rng_rejects_bad_keys() -> None:
    with pytest.raises(TypeError):
        noise_rng(True)
    with pytest.raises(TypeError):
        noise_rng(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        noise_rng()


def test_same_key_same_noise_regardless_of_order() -> None:
    forward = [_noisy(name) for name in ("01", "02", "03")]
    backward = [_noisy(name) for name in ("03", "02", "01")][::-1]
    for a, b in zip(forward, backward, strict=True):
        np.testing.assert_array_equal(a, b)


def test_different_keys_give_different_noise() -> None:
    base = _noisy()
    for variant in [_noisy("02"), _noisy(sigma=15), _noisy(seed=1), _noisy(repeat=1)]:
        assert not np.array_equal(base, variant)
    other_set = add_gaussian_noise(CLEAN, 25, dataset="bsd68", image="01")
    assert not np.array_equal(base, other_set)


def test_noise_level_and_dtype() -> None:
    clean = np.zeros((256, 256), dtype=np.float32)
    noisy = add_gaussian_noise(clean, 50, dataset="synthetic", image="zeros")
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert noisy.std() == pytest.approx(50 / 255, rel=0.02)
    assert abs(float(noisy.mean())) < 0.005
    assert noisy.min() < 0  # unclipped by default


def test_clip_and_quantize() -> None:
    clipped = _noisy(sigma=75, clip=True)
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    quantized = _noisy(sigma=75, quantize=True)
    np.testing.assert_allclose(quantized * 255, np.round(quantized * 255), atol=1e-4)
    assert quantized.min() == 0.0 and quantized.max() == 1.0
    assert np.abs(quantized - clipped).max() <= 0.5 / 255 + 1e-7


def test_zero_sigma_and_colour_images() -> None:
    np.testing.assert_array_equal(_noisy(sigma=0), CLEAN)
    rgb = np.full((8, 8, 3), 0.5, dtype=np.float64)
    assert add_gaussian_noise(rgb, 10, dataset="cc", image="x").shape == (8, 8, 3)


def test_rejects_integer_images_and_negative_sigma() -> None:
    with pytest.raises(TypeError):
        add_gaussian_noise(np.zeros((4, 4), dtype=np.uint8), 25, dataset="d", image="i")
    with pytest.raises(ValueError):
        _noisy(sigma=-1)
