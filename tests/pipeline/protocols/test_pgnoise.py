"""Poisson-Gaussian noise: the variance follows a·x + b, level ranges, per-patch levels, seeding by key."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.protocols.pgnoise import (
    add_poisson_gaussian_noise,
    estimate_noise_levels,
    linearise,
    noise_levels,
    random_linearise,
    sample_noise_levels,
    sample_training_batch,
    seeded_poisson_gaussian,
    with_noise_maps,
)

INTENSITIES = (0.0, 0.05, 0.2, 0.5, 0.8, 1.0)


def _relative_variance_tolerance(n: int) -> float:
    """Six standard errors of a Gaussian sample variance, relative to the true variance."""
    return 6.0 * np.sqrt(2.0 / (n - 1))


@pytest.mark.parametrize(("a", "b", "seed"), [(1e-2, 1e-4, 0), (1e-4, 1e-7, 1), (0.1, 5e-3, 2)])
def test_variance_follows_the_noise_level_function(a: float, b: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    flat = np.stack([np.full((400, 500), x, dtype=np.float32) for x in INTENSITIES])
    noisy = add_poisson_gaussian_noise(flat, a, b, rng, clip=False)
    measured = (noisy - flat).reshape(len(INTENSITIES), -1).var(axis=1, ddof=1)
    expected = a * np.array(INTENSITIES) + b
    np.testing.assert_allclose(measured, expected, rtol=_relative_variance_tolerance(400 * 500))


def test_noise_is_zero_mean_and_clipping_keeps_the_unit_range() -> None:
    rng = np.random.default_rng(1)
    flat = np.full((500, 500), 0.5, dtype=np.float32)
    noisy = add_poisson_gaussian_noise(flat, 0.01, 1e-3, rng, clip=False)
    assert abs(float(noisy.mean()) - 0.5) < 6 * np.sqrt(0.006 / flat.size)
    clipped = add_poisson_gaussian_noise(np.array([0.0, 1.0], dtype=np.float32), 0.1, 0.1, rng)
    assert clipped.dtype == np.float32
    assert clipped.min() >= 0.0 and clipped.max() <= 1.0


def test_sampled_levels_cover_the_spec_ranges() -> None:
    a, b = sample_noise_levels(np.random.default_rng(2), 20_000)
    log_a, offset = np.log10(a), np.log10(b) - np.log10(a) + 2.3
    assert log_a.min() >= -4.0 and log_a.max() <= -1.0
    assert offset.min() >= -1.3 and offset.max() <= 1.3
    assert log_a.min() < -3.99 and log_a.max() > -1.01 and abs(log_a.mean() + 2.5) < 0.05
    assert offset.min() < -1.29 and offset.max() > 1.29 and abs(offset.mean()) < 0.05


def test_training_batch_gives_each_patch_its_own_levels() -> None:
    rng = np.random.default_rng(3)
    clean = np.full((6, 128, 128), 0.6, dtype=np.float32)
    batch = sample_training_batch(clean, rng, linearise_intensity=False, clip=False)
    assert batch.inputs.shape == (6, 3, 128, 128) and batch.targets.shape == (6, 1, 128, 128)
    assert len(np.unique(batch.a)) == 6
    for plane, level in ((1, batch.a), (2, batch.b)):
        assert np.all(batch.inputs[:, plane] == level.astype(np.float32)[:, None, None])
    measured = (batch.inputs[:, 0] - 0.6).reshape(6, -1).var(axis=1, ddof=1)
    np.testing.assert_allclose(
        measured, batch.a * 0.6 + batch.b, rtol=_relative_variance_tolerance(128 * 128)
    )


def test_training_batch_target_is_the_linearised_clean_patch() -> None:
    clean = np.random.default_rng(4).uniform(size=(8, 16, 16)).astype(np.float32)
    batch = sample_training_batch(clean, np.random.default_rng(5))
    replay = np.random.default_rng(5)
    np.testing.assert_array_equal(batch.targets[:, 0], random_linearise(clean, replay))
    assert batch.inputs[:, 0].min() >= 0.0 and batch.inputs[:, 0].max() <= 1.0


def test_random_linearise_draws_power_and_scale_per_patch() -> None:
    ones = np.ones((5000, 1, 1), dtype=np.float32)
    half = np.full((5000, 1, 1), 0.5, dtype=np.float32)
    scales = random_linearise(ones, np.random.default_rng(6)).ravel()
    assert scales.min() >= 0.25 and scales.max() <= 1.0 and scales.std() > 0.15
    gammas = np.log(random_linearise(half, np.random.default_rng(6)).ravel() / scales) / np.log(0.5)
    np.testing.assert_array_less(1.25 - 1e-3, gammas)
    np.testing.assert_array_less(gammas, 10.0 + 1e-3)


def test_linearise_is_scaled_power() -> None:
    x = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(linearise(x, 2.5, 0.5), 0.5 * x**2.5, rtol=1e-6)
    per_sample = linearise(np.stack([x, x]), np.array([1.0, 2.0]), np.array([1.0, 0.5]))
    np.testing.assert_allclose(per_sample, np.stack([x, 0.5 * x**2]), rtol=1e-6)


def test_noise_maps_stack_image_and_constant_planes() -> None:
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    stacked = with_noise_maps(image, 0.01, 1e-4)
    assert stacked.shape == (3, 3, 4) and stacked.dtype == np.float32
    np.testing.assert_array_equal(stacked[0], image)
    assert np.all(stacked[1] == np.float32(0.01)) and np.all(stacked[2] == np.float32(1e-4))
    with pytest.raises(ValueError, match="gray"):
        with_noise_maps(np.zeros((1, 1, 3, 4)), 0.1, 0.1)


def test_seeded_noise_is_fixed_by_its_key() -> None:
    clean = np.full((32, 32), 0.3, dtype=np.float32)
    first = seeded_poisson_gaussian(clean, dataset="set12", image="01", seed=0, repeat=0)
    again = seeded_poisson_gaussian(clean, dataset="set12", image="01", seed=0, repeat=0)
    np.testing.assert_array_equal(first.noisy, again.noisy)
    assert (first.a, first.b) == (again.a, again.b)
    assert 1e-4 <= first.a <= 0.1
    for other in ({"image": "02"}, {"repeat": 1}, {"seed": 1}):
        key = {"dataset": "set12", "image": "01", "seed": 0, "repeat": 0} | other
        assert not np.array_equal(seeded_poisson_gaussian(clean, **key).noisy, first.noisy)


@pytest.mark.parametrize(("a", "b"), [(1e-2, 1e-4), (1e-3, 1e-5), (0.0, 4e-4)])
def test_estimated_levels_recover_the_noise_level_function(a: float, b: float) -> None:
    ramp = np.tile(np.linspace(0.05, 0.95, 512, dtype=np.float32), (512, 1))
    noisy = add_poisson_gaussian_noise(ramp, a, b, np.random.default_rng(7), clip=False)
    estimated_a, estimated_b = estimate_noise_levels(noisy)
    # compare the fitted σ(x)² where the ramp has its data, not the two coefficients one by one
    levels = np.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(estimated_a * levels + estimated_b, a * levels + b, rtol=0.1)
    assert estimated_a >= 0.0 and estimated_b >= 0.0


def test_noise_free_image_gets_zero_levels() -> None:
    assert estimate_noise_levels(np.full((64, 64), 0.5)) == (0.0, 0.0)


def test_noise_levels_of_a_setting() -> None:
    image = add_poisson_gaussian_noise(np.full((128, 128), 0.5), 0.0, 1e-3, np.random.default_rng(8), clip=False)
    assert noise_levels(image, 25) == (0.0, (25 / 255) ** 2)
    assert noise_levels(image, 0) == estimate_noise_levels(image)
