"""DND reader, raw/sRGB protocols and submission bundle, on a tiny synthetic folder with DND's file layout."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import pytest
import scipy.io

from pipeline.realnoise.dnd import (
    DndMissingFileError,
    NoiseLevel,
    bundle_submission,
    crop_path,
    denoise_dnd,
    iter_crops,
    read_bundle,
    read_info,
)

N_IMAGES, N_BOXES, HEIGHT, WIDTH, CROP = 2, 3, 20, 24, 8


class Truth(NamedTuple):
    raw: list[np.ndarray]
    srgb: list[np.ndarray]
    boxes: list[np.ndarray]  # 1-based inclusive [row0, col0, row1, col1], as DND stores them
    nlf: list[tuple[float, float]]
    sigma_raw: list[np.ndarray]  # [xx, yy, box], as DND stores it
    sigma_srgb: list[np.ndarray]


def _make_truth(rng: np.random.Generator) -> Truth:
    corners = [
        rng.integers(0, [HEIGHT - CROP + 1, WIDTH - CROP + 1], size=(N_BOXES, 2)) for _ in range(N_IMAGES)
    ]
    return Truth(
        raw=[rng.uniform(size=(HEIGHT, WIDTH)) for _ in range(N_IMAGES)],
        srgb=[rng.uniform(size=(HEIGHT, WIDTH, 3)) for _ in range(N_IMAGES)],
        boxes=[np.hstack([c + 1, c + CROP]) for c in corners],
        nlf=[(float(a), float(b)) for a, b in rng.uniform(1e-4, 1e-2, size=(N_IMAGES, 2))],
        sigma_raw=[rng.uniform(0.01, 0.1, size=(2, 2, N_BOXES)) for _ in range(N_IMAGES)],
        sigma_srgb=[rng.uniform(0.01, 0.1, size=N_BOXES) for _ in range(N_IMAGES)],
    )


def _write_info(path: Path, truth: Truth) -> None:
    """``info.mat`` as MATLAB v7.3 writes a struct of per-image arrays: fields of refs into ``#refs#``."""
    with h5py.File(path, "w", userblock_size=512) as f:
        store = f.create_group("#refs#")
        refs: dict[str, list] = {name: [] for name in ("boundingboxes", "nlf", "sigma_raw", "sigma_srgb")}
        for i in range(N_IMAGES):
            refs["boundingboxes"].append(
                store.create_dataset(f"bb{i}", data=truth.boxes[i].T.astype(float)).ref
            )
            nlf = store.create_group(f"nlf{i}")
            nlf["a"], nlf["b"] = [[truth.nlf[i][0]]], [[truth.nlf[i][1]]]
            refs["nlf"].append(nlf.ref)
            refs["sigma_raw"].append(store.create_dataset(f"raw{i}", data=truth.sigma_raw[i]).ref)
            refs["sigma_srgb"].append(store.create_dataset(f"srgb{i}", data=truth.sigma_srgb[i][None]).ref)
        info = f.create_group("info")
        for name, values in refs.items():
            info.create_dataset(name, data=np.array([values], dtype=h5py.ref_dtype))


def _write_images(root: Path, folder: str, key: str, images: list[np.ndarray]) -> None:
    (root / folder).mkdir()
    for i, image in enumerate(images):
        with h5py.File(root / folder / f"{i + 1:04d}.mat", "w", userblock_size=512) as f:
            f[key] = image.T  # MATLAB v7.3 stores arrays transposed


@pytest.fixture
def dnd(tmp_path: Path) -> tuple[Path, Truth]:
    truth = _make_truth(np.random.default_rng(0))
    root = tmp_path / "dnd"
    root.mkdir()
    _write_info(root / "info.mat", truth)
    _write_images(root, "images_raw", "Inoisy", truth.raw)
    _write_images(root, "images_srgb", "InoisySRGB", truth.srgb)
    return root, truth


def _crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    r0, c0, r1, c1 = box
    return image[r0 - 1 : r1, c0 - 1 : c1].astype(np.float32)


def test_info_is_read_with_its_references(dnd: tuple[Path, Truth]) -> None:
    root, truth = dnd
    info = read_info(root, N_IMAGES)
    for i in range(N_IMAGES):
        np.testing.assert_array_equal(info.boxes[i], truth.boxes[i])
        assert info.nlf[i] == truth.nlf[i]
        np.testing.assert_array_equal(info.sigma_raw[i], truth.sigma_raw[i])
        np.testing.assert_array_equal(info.sigma_srgb[i], truth.sigma_srgb[i])
    with pytest.raises(ValueError, match="fewer"):
        read_info(root, N_IMAGES + 1)


@pytest.mark.parametrize("mode", ["raw", "srgb"])
def test_crops_follow_the_one_based_boxes(dnd: tuple[Path, Truth], mode: str) -> None:
    root, truth = dnd
    crops = list(iter_crops(root, mode, n_images=N_IMAGES))
    assert [(c.image, c.box) for c in crops] == [(i, k) for i in range(N_IMAGES) for k in range(N_BOXES)]
    images = truth.raw if mode == "raw" else truth.srgb
    for crop in crops:
        np.testing.assert_array_equal(
            crop.noisy, _crop(images[crop.image], truth.boxes[crop.image][crop.box])
        )
        assert crop.noisy.dtype == np.float32 and (crop.a, crop.b) == truth.nlf[crop.image]


def test_raw_protocol_denoises_each_bayer_phase_with_its_sigma(
    dnd: tuple[Path, Truth], tmp_path: Path
) -> None:
    root, truth = dnd
    calls: list[tuple[tuple[int, ...], NoiseLevel]] = []

    def shift_by_sigma(phase: np.ndarray, level: NoiseLevel) -> np.ndarray:
        calls.append((phase.shape, level))
        return phase + level.sigma

    denoise_dnd(root, tmp_path / "out", shift_by_sigma, mode="raw", n_images=N_IMAGES)
    assert len(calls) == 4 * N_IMAGES * N_BOXES
    assert all(shape == (CROP // 2, CROP // 2) for shape, _ in calls)
    for i in range(N_IMAGES):
        for k in range(N_BOXES):
            result = scipy.io.loadmat(crop_path(tmp_path / "out", i, k))["Idenoised_crop"]
            expected = _crop(truth.raw[i], truth.boxes[i][k])
            for yy in range(2):
                for xx in range(2):
                    expected[yy::2, xx::2] += np.float32(truth.sigma_raw[i][xx, yy, k])
            np.testing.assert_allclose(result, expected, rtol=1e-6)
            assert result.dtype == np.float32
    assert {(level.a, level.b) for _, level in calls[: 4 * N_BOXES]} == {truth.nlf[0]}


def test_raw_bundle_round_trip(dnd: tuple[Path, Truth], tmp_path: Path) -> None:
    root, truth = dnd
    crop_dir = tmp_path / "crops"
    denoise_dnd(root, crop_dir, lambda phase, level: phase, n_images=N_IMAGES)
    paths = bundle_submission(crop_dir, israw=True, n_images=N_IMAGES, n_boxes=N_BOXES)
    assert [p.relative_to(crop_dir).as_posix() for p in paths] == ["bundled/0001.mat", "bundled/0002.mat"]
    raw = scipy.io.loadmat(paths[0])
    assert {k for k in raw if not k.startswith("__")} == {"Idenoised", "israw", "eval_version"}
    assert raw["Idenoised"].dtype == object and raw["Idenoised"].shape == (1, N_BOXES)
    for i, path in enumerate(paths):
        bundle = read_bundle(path)
        assert bundle.israw is True and bundle.eval_version == "1.0"
        for k, crop in enumerate(bundle.crops):
            assert crop.dtype == np.float32 and crop.shape == (CROP, CROP)
            np.testing.assert_array_equal(crop, _crop(truth.raw[i], truth.boxes[i][k]))


def test_srgb_protocol_and_bundle(dnd: tuple[Path, Truth], tmp_path: Path) -> None:
    root, truth = dnd
    levels: list[float] = []

    def record(crop: np.ndarray, level: NoiseLevel) -> np.ndarray:
        levels.append(level.sigma)
        return crop

    denoise_dnd(root, tmp_path, record, mode="srgb", n_images=N_IMAGES)
    np.testing.assert_array_equal(levels, np.concatenate(truth.sigma_srgb))
    bundle = read_bundle(bundle_submission(tmp_path, israw=False, n_images=N_IMAGES, n_boxes=N_BOXES)[1])
    assert bundle.israw is False and bundle.crops[2].shape == (CROP, CROP, 3)
    np.testing.assert_array_equal(bundle.crops[2], _crop(truth.srgb[1], truth.boxes[1][2]))


def test_missing_files_are_named_with_the_registration_hint(dnd: tuple[Path, Truth], tmp_path: Path) -> None:
    root, _ = dnd
    (root / "images_raw" / "0002.mat").unlink()
    with pytest.raises(DndMissingFileError, match=r"0002\.mat.*registration"):
        next(iter_crops(root, "raw", n_images=N_IMAGES))
    (root / "info.mat").unlink()
    with pytest.raises(DndMissingFileError, match=r"info\.mat"):
        read_info(root, N_IMAGES)
    with pytest.raises(DndMissingFileError, match=r"0001_01\.mat"):
        bundle_submission(tmp_path / "empty", israw=True, n_images=1, n_boxes=1)


def test_denoiser_output_shape_is_checked(dnd: tuple[Path, Truth], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shape"):
        denoise_dnd(dnd[0], tmp_path, lambda phase, level: phase[:-1], n_images=1)
    with pytest.raises(ValueError, match="mode"):
        denoise_dnd(dnd[0], tmp_path, lambda phase, level: phase, mode="jpeg", n_images=1)


def test_sigma_raw_in_another_layout_is_rejected(dnd: tuple[Path, Truth]) -> None:
    root, truth = dnd
    _write_info(root / "info.mat", truth._replace(sigma_raw=[s.T for s in truth.sigma_raw]))
    with pytest.raises(ValueError, match="sigma_raw"):
        read_info(root, N_IMAGES)


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A working directory with the repository's params.yaml."""
    (tmp_path / "params.yaml").write_text((Path(__file__).parents[3] / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _cli(*args: str):
    from click.testing import CliRunner

    from pipeline.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_submit_dnd_writes_the_upload_bundle(dnd: tuple[Path, Truth], project: Path) -> None:
    root, truth = dnd
    result = _cli("submit", "dnd", str(root), "--method", "noisy", "-o", "submission")
    assert result.exit_code == 0, result.output
    assert f"{N_IMAGES * N_BOXES} crops → {N_IMAGES} files" in result.output
    bundle = read_bundle(project / "submission/bundled/0002.mat")
    assert bundle.israw and len(bundle.crops) == N_BOXES
    np.testing.assert_array_equal(bundle.crops[1], _crop(truth.raw[1], truth.boxes[1][1]))  # noisy = identity


def test_submit_dnd_hands_a_noise_map_network_the_images_levels(
    dnd: tuple[Path, Truth], project: Path, monkeypatch
) -> None:
    import torch

    from pipeline.config import load_params
    from pipeline.fit import make_method
    from pipeline.methods import LearnedMethod
    from pipeline.train import save_model

    root, truth = dnd
    method = make_method("dncnn-pg", load_params(project / "params.yaml"), "realnoise")
    torch.manual_seed(0)
    save_model(method.build_network(0), project / "pg", {"method": "dncnn-pg", "hparams": method.hparams})
    seen = []
    monkeypatch.setattr(LearnedMethod, "restore_with_levels",
                        lambda self, image, a, b: seen.append((a, b)) or image)
    result = _cli("submit", "dnd", str(root), "--method", "dncnn-pg", "--checkpoint", str(project / "pg/model.pt"),
                  "-o", "submission")
    assert result.exit_code == 0, result.output
    assert set(seen) == set(truth.nlf) and len(seen) == N_IMAGES * N_BOXES * 4  # every Bayer phase
