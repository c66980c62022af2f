"""PSNR and SSIM: closed-form cases, conventions, and the published CC15 numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from pipeline.protocols.metrics import psnr, ssim

# Published CC15 PSNRs (dB): the "noisy" and Nam et al.'s "CC" columns of Jun Xu's table
# (GuoShi28/CBDNet issue #22), in sorted crop order.
CC15_PUBLISHED = {
    "5dmark3_iso3200_1": (37.00, 38.37),
    "5dmark3_iso3200_2": (33.88, 35.37),
    "5dmark3_iso3200_3": (33.83, 34.91),
    "d600_iso3200_1": (33.28, 34.98),
    "d600_iso3200_2": (33.77, 35.95),
    "d600_iso3200_3": (34.93, 41.15),
    "d800_iso1600_1": (35.47, 37.99),
    "d800_iso1600_2": (35.71, 40.36),
    "d800_iso1600_3": (34.81, 38.30),
    "d800_iso3200_1": (33.26, 39.01),
    "d800_iso3200_2": (32.89, 36.75),
    "d800_iso3200_3": (32.91, 39.06),
    "d800_iso6400_1": (29.63, 34.61),
    "d800_iso6400_2": (29.97, 33.21),
    "d800_iso6400_3": (29.87, 33.22),
}
CC15_MEANS = (33.41, 36.88)


def _ramp(shape: tuple[int, ...] = (32, 32)) -> np.ndarray:
    return np.linspace(0.1, 0.9, math.prod(shape)).reshape(shape)


def test_psnr_of_constant_offset_is_closed_form() -> None:
    reference = _ramp()
    assert psnr(reference + 0.01, reference, quantize=False) == pytest.approx(40.0)
    assert psnr(reference * 255 + 2.55, reference * 255, data_range=255, quantize=False) == pytest.approx(
        40.0
    )


def test_psnr_of_identical_images_is_infinite() -> None:
    assert psnr(_ramp(), _ramp(), quantize=False) == math.inf


def test_quantize_clips_and_rounds_the_estimate_only() -> None:
    reference = np.arange(256.0).reshape(16, 16) / 255
    nudged = reference + 0.4 / 255
    nudged[0, 0] = -0.2  # clipped to 0 = reference[0, 0]
    assert psnr(nudged, reference) == math.inf
    assert psnr(nudged, reference, quantize=False) < 60
    assert psnr(reference, nudged) < 60  # the reference is never rounded


def test_crop_border_ignores_the_frame() -> None:
    reference = _ramp((20, 20))
    estimate = reference.copy()
    estimate[:3, :] += 0.5
    estimate[:, -3:] -= 0.5
    assert psnr(estimate, reference, crop_border=3, quantize=False) == math.inf
    with pytest.raises(ValueError):
        psnr(estimate, reference, crop_border=10)


def test_colour_psnr_averages_the_channel_mses() -> None:
    reference = _ramp((16, 16, 3))
    estimate = reference + np.array([0.01, 0.02, 0.03])
    mse = np.mean([0.01**2, 0.02**2, 0.03**2])
    assert psnr(estimate, reference, quantize=False) == pytest.approx(10 * math.log10(1 / mse))


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))


def test_ssim_is_wang_et_al_on_the_255_scale() -> None:
    rng = np.random.default_rng(0)
    reference = _ramp((48, 40))
    estimate = np.clip(reference + rng.normal(0, 0.05, reference.shape), 0, 1)
    expected = structural_similarity(
        np.round(estimate * 255),
        reference * 255,
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(estimate, reference) == pytest.approx(expected, abs=1e-12)
    assert ssim(estimate * 255, reference * 255, data_range=255) == pytest.approx(expected, abs=1e-12)
    assert ssim(reference, reference, quantize=False) == pytest.approx(1.0)


def test_ssim_colour_and_crop() -> None:
    reference = _ramp((40, 40, 3))
    estimate = reference.copy()
    estimate[:2] = 0.0
    assert ssim(estimate, reference, quantize=False, crop_border=2) == pytest.approx(1.0)
    assert ssim(estimate, reference, quantize=False) < 1.0


@pytest.mark.mirror
def test_cc15_published_psnrs(mirror: Path) -> None:
    folder = mirror / "datasets" / "cc15"
    noisy_values, cc_values = [], []
    for crop, (noisy_published, cc_published) in CC15_PUBLISHED.items():
        mean, ours, real = (
            np.asarray(Image.open(folder / f"{crop}_{kind}.png")) for kind in ("mean", "ours", "real")
        )
        noisy_values.append(psnr(real, mean, data_range=255))
        cc_values.append(psnr(ours / 255.0, mean / 255.0))
        assert noisy_values[-1] == pytest.approx(noisy_published, abs=0.01), crop
        assert cc_values[-1] == pytest.approx(cc_published, abs=0.01), crop
    assert round(float(np.mean(noisy_values)), 2) == CC15_MEANS[0]
    assert round(float(np.mean(cc_values)), 2) == CC15_MEANS[1]
