"""The realnoise task: stored (noisy, mean) pairs as samples, scored with the CC15 RGB PSNR and SSIM."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.catalog import DATASETS, folder_dataset
from pipeline.data.images import read_image, to_float, write_png
from pipeline.data.prepare import DatasetError, prepare
from pipeline.evaluate import TASKS, EvaluationError, Sample
from pipeline.protocols.metrics import ssim
from pipeline.realnoise.cc15 import psnr_rgb
from pipeline.realnoise.task import RealNoiseTask, quantized

CROPS = ("d800_iso3200_2", "5dmark3_iso3200_1", "d600_iso3200_3")


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """A prepared stand-in of CC15: three crops of 16×16 RGB (real, mean, ours), through the prepare stage."""
    rng = np.random.default_rng(0)
    for crop in CROPS:
        clean = rng.integers(30, 220, (16, 16, 3))
        noise = rng.integers(-20, 21, (16, 16, 3))
        for kind, scale in (("mean", 0.0), ("real", 1.0), ("ours", 0.2)):
            write_png(tmp_path / "src" / f"{crop}_{kind}.png", np.round(clean + scale * noise).astype(np.uint8))
    prepare(folder_dataset("cc15", str(tmp_path / "src"), "rgb"), tmp_path / "cc15", raw=tmp_path / "raw")
    return tmp_path / "cc15"


def test_realnoise_is_a_registered_task() -> None:
    assert TASKS["realnoise"] is RealNoiseTask
    assert RealNoiseTask.name == "realnoise"


def test_samples_are_the_stored_pairs_whatever_the_setting(prepared: Path) -> None:
    task = RealNoiseTask({}, seed=0)
    for setting in (0, 25):
        samples = list(task.samples("cc15", prepared, setting, None))
        assert [sample.image for sample in samples] == sorted(CROPS)
        first = samples[0]
        assert first.dataset == "cc15"
        np.testing.assert_array_equal(first.degraded, to_float(read_image(prepared / f"{first.image}_real.png")))
        np.testing.assert_array_equal(first.reference, read_image(prepared / f"{first.image}_mean.png") / 255.0)
        assert first.degraded.dtype == np.float32 and first.degraded.shape == (16, 16, 3)
        assert first.reference.dtype == np.float64


def test_samples_honour_max_images(prepared: Path) -> None:
    task = RealNoiseTask({})
    assert [sample.image for sample in task.samples("cc15", prepared, 0, 2)] == sorted(CROPS)[:2]
    assert list(task.samples("cc15", prepared, 0, 0)) == []


def test_samples_of_an_unprepared_folder_say_how_to_prepare(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="prepare cc15"):
        list(RealNoiseTask({}).samples("cc15", tmp_path / "cc15", 0, None))


def test_degrade_refuses_to_synthesise_real_noise() -> None:
    with pytest.raises(EvaluationError, match="cannot be synthesised"):
        RealNoiseTask({}).degrade(np.zeros((16, 16, 3), dtype=np.uint8), "cc15", "x", 0)


def test_score_is_the_rgb_psnr_and_channel_averaged_ssim(prepared: Path) -> None:
    task = RealNoiseTask({})
    sample = next(task.samples("cc15", prepared, 0, None))
    ours = to_float(read_image(prepared / f"{sample.image}_ours.png"))
    psnr_value, ssim_value = task.score(ours, sample, 0)
    clean = read_image(prepared / f"{sample.image}_mean.png")
    assert psnr_value == pytest.approx(psnr_rgb(read_image(prepared / f"{sample.image}_ours.png"), clean))
    assert ssim_value == pytest.approx(ssim(ours, sample.reference))
    assert 0 < ssim_value < 1
    assert task.score(sample.reference, sample, 0) == (math.inf, pytest.approx(1.0))


def test_score_quantizes_the_estimate_unless_the_protocol_says_not_to() -> None:
    reference = np.full((16, 16, 3), 100 / 255)
    sample = Sample("cc15", "x", reference, reference)
    estimate = reference + 0.4 / 255
    assert RealNoiseTask({}).score(estimate, sample, 0)[0] == math.inf
    raw_psnr = RealNoiseTask({"output_quantize": False}).score(estimate, sample, 0)[0]
    assert raw_psnr == pytest.approx(20 * math.log10(255 / 0.4))


def test_quantized_clips_and_rounds_half_away_from_zero() -> None:
    values = np.array([-0.1, 0.5 / 255, 1.5 / 255, 254.49 / 255, 1.2])
    np.testing.assert_allclose(quantized(values) * 255, [0, 1, 2, 254, 255])


@pytest.mark.mirror
def test_nam_results_score_the_published_cc_column_through_the_task(mirror: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cc15"
    prepare(DATASETS.get("cc15"), folder, raw=tmp_path / "raw", mirror=mirror)
    task = RealNoiseTask({})
    cc, noisy = [], []
    for sample in task.samples("cc15", folder, 0, None):
        cc.append(task.score(to_float(read_image(folder / f"{sample.image}_ours.png")), sample, 0)[0])
        noisy.append(task.score(sample.degraded, sample, 0)[0])
    assert len(cc) == 15
    assert round(float(np.mean(cc)), 2) == 36.88
    assert round(float(np.mean(noisy)), 2) == 33.41
