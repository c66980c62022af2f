"""Signal-dependent Poisson-Gaussian noise of N3Net's real-noise variant (spec §g).

The noise level function is σ(x)² = a·x + b and the noisy image is y = x + σ(x)·n with n ~ N(0, 1), clipped
to [0, 1] by default. Levels are drawn as a = 10^U(−4, −1) and log10 b = log10 a − 2.3 + U(−1.3, 1.3).

The network sees three planes: the noisy gray image and two constant planes holding a and b. In training the
clean patch is first "linearised" by a random power γ ~ U[1.25, 10] and then scaled by U[0.25, 1]; the
synthetic test uses the fixed power ``TEST_GAMMA`` and the scales ``TEST_SCALES``.

At test time on real photographs the levels are unknown: :func:`estimate_noise_levels` fits σ(x)² = a·x + b to
one channel, and :func:`noise_levels` turns a task setting into (a, b).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pipeline.protocols.noise import noise_rng

LOG10_A_RANGE = (-4.0, -1.0)
LOG10_B_OFFSET = -2.3
LOG10_B_SPREAD = 1.3
GAMMA_RANGE = (1.25, 10.0)
SCALE_RANGE = (0.25, 1.0)
TEST_GAMMA = 2.5
TEST_SCALES = (0.5, 1.0)
NOISE_KEY = "poisson-gaussian"
#: intensity bins of :func:`estimate_noise_levels` and the fewest 2×2 blocks a bin needs to count
ESTIMATE_BINS = 16
ESTIMATE_MIN_BLOCKS = 64
#: the least spread of bin intensities that determines a slope; below it the fit is a = 0, b = mean variance
ESTIMATE_MIN_SPAN = 0.05
#: σ = 1.4826 · median |n| for Gaussian n
MAD_TO_STD = 1.4826


class PGSample(NamedTuple):
    """A noisy image and the noise levels that made it."""

    noisy: np.ndarray
    a: float
    b: float


class PGBatch(NamedTuple):
    """A training batch: network inputs ``N×3×H×W``, targets ``N×1×H×W`` and the per-patch levels ``(N,)``."""

    inputs: np.ndarray
    targets: np.ndarray
    a: np.ndarray
    b: np.ndarray


def sample_noise_levels(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` pairs (a, b) from the spec's training distribution; float64 arrays of shape ``(n,)``."""
    log_a = rng.uniform(*LOG10_A_RANGE, size=n)
    log_b = log_a + LOG10_B_OFFSET + rng.uniform(-LOG10_B_SPREAD, LOG10_B_SPREAD, size=n)
    return 10.0**log_a, 10.0**log_b


def noise_std(clean: np.ndarray, a: float | np.ndarray, b: float | np.ndarray) -> np.ndarray:
    """σ(x) = √(a·x + b), with the variance floored at 0 (for slightly negative x)."""
    return np.sqrt(np.maximum(a * clean + b, 0.0))


def add_poisson_gaussian_noise(
    clean: np.ndarray,
    a: float | np.ndarray,
    b: float | np.ndarray,
    rng: np.random.Generator,
    *,
    clip: bool = True,
) -> np.ndarray:
    """y = x + √(a·x + b)·n, n ~ N(0, 1) per pixel; ``a`` and ``b`` broadcast against ``clean``; float32."""
    clean = np.asarray(clean, dtype=np.float32)
    noise = rng.standard_normal(clean.shape, dtype=np.float32)
    noisy = clean + noise_std(clean, np.float32(a), np.float32(b)).astype(np.float32) * noise
    return np.clip(noisy, 0.0, 1.0) if clip else noisy


def seeded_poisson_gaussian(
    clean: np.ndarray, *, dataset: str, image: str, seed: int = 0, repeat: int = 0, clip: bool = True
) -> PGSample:
    """Evaluation noise: (a, b) and n from ``noise_rng("poisson-gaussian", dataset, image, seed, repeat)``.

    The levels are drawn first (one pair from ``sample_noise_levels``), then the per-pixel normals, so the
    same key gives the same noisy image on every machine.
    """
    rng = noise_rng(NOISE_KEY, dataset, image, seed, repeat)
    a, b = (float(v[0]) for v in sample_noise_levels(rng, 1))
    return PGSample(add_poisson_gaussian_noise(clean, a, b, rng, clip=clip), a, b)


def linearise(clean: np.ndarray, gamma: float | np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """scale·x^γ in float32; ``gamma``, ``scale`` of shape ``(N,)`` apply per sample of an ``N×…`` batch."""
    clean = np.asarray(clean, dtype=np.float32)
    gamma, scale = (_per_sample(np.asarray(v, dtype=np.float32), clean.ndim) for v in (gamma, scale))
    return (scale * np.power(clean, gamma)).astype(np.float32)


def random_linearise(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training augmentation: each patch of an ``N×H×W`` batch gets γ ~ U[1.25, 10] and scale ~ U[0.25, 1]."""
    n = len(batch)
    return linearise(batch, rng.uniform(*GAMMA_RANGE, size=n), rng.uniform(*SCALE_RANGE, size=n))


def with_noise_maps(noisy: np.ndarray, a: float | np.ndarray, b: float | np.ndarray) -> np.ndarray:
    """Stack the noisy gray image with constant a and b planes: ``H×W → 3×H×W`` or ``N×H×W → N×3×H×W``.

    For a batch, ``a`` and ``b`` are scalars or arrays of shape ``(N,)``.
    """
    noisy = np.asarray(noisy, dtype=np.float32)
    if noisy.ndim not in (2, 3):
        raise ValueError(f"expected a gray H×W image or an N×H×W batch, got shape {noisy.shape}")
    planes = [noisy, *(np.broadcast_to(_per_sample(np.float32(v), noisy.ndim), noisy.shape) for v in (a, b))]
    return np.stack(planes, axis=-3)


def sample_training_batch(
    clean: np.ndarray, rng: np.random.Generator, *, linearise_intensity: bool = True, clip: bool = True
) -> PGBatch:
    """One training batch from clean gray patches ``N×H×W`` in [0, 1]; every patch gets its own (a, b).

    With ``linearise_intensity`` the patches first go through ``random_linearise``; the target is the
    (linearised) clean patch.
    """
    clean = np.asarray(clean, dtype=np.float32)
    if clean.ndim != 3:
        raise ValueError(f"expected an N×H×W batch of gray patches, got shape {clean.shape}")
    target = random_linearise(clean, rng) if linearise_intensity else clean
    a, b = sample_noise_levels(rng, len(clean))
    noisy = add_poisson_gaussian_noise(target, _per_sample(a, 3), _per_sample(b, 3), rng, clip=clip)
    return PGBatch(with_noise_maps(noisy, a, b), target[:, None], a, b)


def estimate_noise_levels(image: np.ndarray) -> tuple[float, float]:
    """Fit σ(x)² = a·x + b (a, b ≥ 0) to one gray channel in [0, 1].

    Every 2×2 block gives a local mean and its Haar diagonal detail (tl − tr − bl + br)/2, whose variance is
    σ² for white noise and which cancels linear intensity trends. The blocks are binned by mean into
    ``ESTIMATE_BINS`` quantile bins; each bin's noise variance is the squared robust σ (``MAD_TO_STD`` × median
    |detail|), and a least-squares line through (bin mean, variance) gives (a, b). Like every white-noise
    estimator it underestimates spatially correlated (demosaiced, in-camera processed) noise.
    """
    x = np.asarray(image, dtype=np.float64)
    if x.ndim != 2 or min(x.shape) < 2:
        raise ValueError(f"expected a gray H×W image of at least 2×2, got shape {x.shape}")
    x = x[: x.shape[0] // 2 * 2, : x.shape[1] // 2 * 2]
    tl, tr, bl, br = x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]
    detail, mean = ((tl - tr - bl + br) / 2).ravel(), ((tl + tr + bl + br) / 4).ravel()
    order = np.argsort(mean, kind="stable")
    levels, variances = [], []
    for chunk in np.array_split(order, ESTIMATE_BINS):
        if len(chunk) >= ESTIMATE_MIN_BLOCKS:
            levels.append(mean[chunk].mean())
            variances.append((MAD_TO_STD * np.median(np.abs(detail[chunk]))) ** 2)
    levels_, variances_ = np.asarray(levels), np.asarray(variances)
    if len(levels_) < 2 or np.ptp(levels_) < ESTIMATE_MIN_SPAN:
        return 0.0, float(np.mean(variances_)) if len(variances_) else 0.0
    a, b = np.polyfit(levels_, variances_, 1)
    if a < 0:
        return 0.0, float(variances_.mean())
    if b < 0:
        return float(levels_ @ variances_ / (levels_ @ levels_)), 0.0
    return float(a), float(b)


def noise_levels(image: np.ndarray, setting: int) -> tuple[float, float]:
    """The (a, b) a noise-map network is given for one gray channel: estimated (``setting`` 0) or the Gaussian
    level σ = ``setting`` on the 0–255 scale (a = 0, b = (σ/255)²)."""
    return estimate_noise_levels(image) if setting == 0 else (0.0, (setting / 255.0) ** 2)


def _per_sample(values: np.ndarray, ndim: int) -> np.ndarray:
    """Reshape a per-sample vector ``(N,)`` to ``(N, 1, …)`` so it broadcasts over an ``ndim`` batch."""
    values = np.asarray(values)
    return values.reshape(values.shape + (1,) * (ndim - 1)) if values.ndim == 1 else values
