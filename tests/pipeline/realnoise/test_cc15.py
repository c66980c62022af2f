"""CC15 pairing and the published RGB PSNR (``csnr.m``): synthetic folders, plus the real crops in the mirror."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.catalog import folder_dataset
from pipeline.data.images import read_image, write_png
from pipeline.data.prepare import prepare
from pipeline.realnoise.cc15 import (
    PairingError,
    group_stems,
    paired_files,
    psnr_rgb,
    read_pairs,
    split_stem,
)

# Published per-crop PSNR (dB) of Nam et al.'s "CC" result and of the noisy input, in sorted crop order
# (shared/datasets/README.md, "CC15 reference numbers"; the table posted in GuoShi28/CBDNet#22).
PUBLISHED = {
    "5dmark3_iso3200_1": (38.37, 37.00),
    "5dmark3_iso3200_2": (35.37, 33.88),
    "5dmark3_iso3200_3": (34.91, 33.83),
    "d600_iso3200_1": (34.98, 33.28),
    "d600_iso3200_2": (35.95, 33.77),
    "d600_iso3200_3": (41.15, 34.93),
    "d800_iso1600_1": (37.99, 35.47),
    "d800_iso1600_2": (40.36, 35.71),
    "d800_iso1600_3": (38.30, 34.81),
    "d800_iso3200_1": (39.01, 33.26),
    "d800_iso3200_2": (36.75, 32.89),
    "d800_iso3200_3": (39.06, 32.91),
    "d800_iso6400_1": (34.61, 29.63),
    "d800_iso6400_2": (33.21, 29.97),
    "d800_iso6400_3": (33.22, 29.87),
}
PUBLISHED_MEAN_CC, PUBLISHED_MEAN_NOISY = 36.88, 33.41

CROPS = ("d800_iso1600_1", "5dmark3_iso3200_2", "d600_iso3200_1")


def write_cc15(folder: Path, crops: tuple[str, ...] = CROPS, kinds: tuple[str, ...] = ("real", "mean", "ours")) -> None:
    """Tiny random 16×16 RGB stand-ins named like the CC15 files."""
    rng = np.random.default_rng(0)
    for crop in crops:
        for kind in kinds:
            write_png(folder / f"{crop}_{kind}.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))


def test_psnr_rgb_is_the_mean_of_the_channel_mses_not_of_the_channel_psnrs() -> None:
    reference = np.zeros((4, 5, 3))
    estimate = reference + np.array([1.0, 2.0, 4.0])  # channel MSEs 1, 4, 16
    assert psnr_rgb(estimate, reference) == pytest.approx(10 * math.log10(255**2 / 7))
    per_channel = np.mean([10 * math.log10(255**2 / mse) for mse in (1, 4, 16)])
    assert psnr_rgb(estimate, reference) < per_channel


def test_psnr_rgb_scales_with_data_range_and_handles_gray_and_identity() -> None:
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 256, (6, 7, 3)).astype(np.float64)
    estimate = np.clip(reference + rng.normal(0, 5, reference.shape), 0, 255)
    assert psnr_rgb(estimate / 255, reference / 255, data_range=1.0) == pytest.approx(psnr_rgb(estimate, reference))
    assert psnr_rgb(estimate[..., 0], reference[..., 0]) == pytest.approx(
        10 * math.log10(255**2 / np.mean((estimate[..., 0] - reference[..., 0]) ** 2))
    )
    assert psnr_rgb(reference, reference) == math.inf
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr_rgb(estimate[:-1], reference)


def test_split_stem() -> None:
    assert split_stem("d800_iso1600_2_real") == ("d800_iso1600_2", "real")
    assert split_stem("5dmark3_iso3200_1_ours") == ("5dmark3_iso3200_1", "ours")
    for stem in ("d800_iso1600_2_noisy", "real", "_mean"):
        with pytest.raises(PairingError, match="not a CC15 file name"):
            split_stem(stem)


def test_group_stems_sorts_by_crop_and_keeps_every_kind() -> None:
    stems = [f"{crop}_{kind}" for crop in CROPS for kind in ("ours", "real", "mean")]
    groups = group_stems(stems)
    assert list(groups) == sorted(CROPS)
    assert groups["d600_iso3200_1"] == {
        "ours": "d600_iso3200_1_ours",
        "real": "d600_iso3200_1_real",
        "mean": "d600_iso3200_1_mean",
    }
    assert group_stems(["a_1_real", "a_1_mean"]) == {"a_1": {"real": "a_1_real", "mean": "a_1_mean"}}


@pytest.mark.parametrize(
    ("stems", "message"),
    [
        (["a_1_real", "a_1_ours"], "has no mean image"),
        (["a_1_ours"], "has no real or mean image"),
        (["a_1_real", "a_1_real", "a_1_mean"], "two 'real' files"),
    ],
)
def test_group_stems_rejects_incomplete_pairs(stems: list[str], message: str) -> None:
    with pytest.raises(PairingError, match=message):
        group_stems(stems)


def test_paired_files_of_a_plain_folder(tmp_path: Path) -> None:
    write_cc15(tmp_path)
    (tmp_path / "SHA256SUMS").write_text("")  # a mirror or download folder holds more than the PNGs
    pairs = paired_files(tmp_path)
    assert [pair.image for pair in pairs] == sorted(CROPS)
    assert pairs[0].noisy == tmp_path / "5dmark3_iso3200_2_real.png"
    assert pairs[0].clean == tmp_path / "5dmark3_iso3200_2_mean.png"
    assert pairs[0].files["ours"] == tmp_path / "5dmark3_iso3200_2_ours.png"


def test_paired_files_of_a_prepared_folder_uses_the_manifest(tmp_path: Path) -> None:
    write_cc15(tmp_path / "src")
    manifest = prepare(folder_dataset("cc15", str(tmp_path / "src"), "rgb"), tmp_path / "cc15", raw=tmp_path / "raw")
    assert len(manifest) == 3 * len(CROPS)  # the prepare stage keeps every file, its stem as the image id
    (tmp_path / "cc15" / "stray_real.png").write_bytes((tmp_path / "src" / "d600_iso3200_1_real.png").read_bytes())
    assert [pair.image for pair in paired_files(tmp_path / "cc15")] == sorted(CROPS)


def test_read_pairs_gives_the_noisy_and_mean_arrays(tmp_path: Path) -> None:
    write_cc15(tmp_path)
    pairs = list(read_pairs(tmp_path))
    assert [image for image, _, _ in pairs] == sorted(CROPS)
    image, noisy, clean = pairs[-1]
    np.testing.assert_array_equal(noisy, read_image(tmp_path / f"{image}_real.png"))
    np.testing.assert_array_equal(clean, read_image(tmp_path / f"{image}_mean.png"))


def test_read_pairs_rejects_mismatched_shapes_and_empty_folders(tmp_path: Path) -> None:
    write_cc15(tmp_path, crops=("a_1",), kinds=("real",))
    write_png(tmp_path / "a_1_mean.png", np.zeros((8, 16, 3), dtype=np.uint8))
    with pytest.raises(PairingError, match="differ in shape"):
        list(read_pairs(tmp_path))
    with pytest.raises(PairingError, match="no CC15 images"):
        paired_files(tmp_path / "missing")


@pytest.mark.mirror
def test_published_cc_and_noisy_columns_are_reproduced(mirror: Path) -> None:
    folder = mirror / "datasets" / "cc15"
    measured = {}
    for pair in paired_files(folder):
        clean = read_image(pair.clean)
        measured[pair.image] = (
            psnr_rgb(read_image(pair.files["ours"]), clean),
            psnr_rgb(read_image(pair.noisy), clean),
        )
    assert list(measured) == list(PUBLISHED)
    for image, (cc, noisy) in measured.items():
        assert cc == pytest.approx(PUBLISHED[image][0], abs=0.01), image
        assert noisy == pytest.approx(PUBLISHED[image][1], abs=0.01), image
    assert round(float(np.mean([cc for cc, _ in measured.values()])), 2) == PUBLISHED_MEAN_CC
    assert round(float(np.mean([noisy for _, noisy in measured.values()])), 2) == PUBLISHED_MEAN_NOISY
