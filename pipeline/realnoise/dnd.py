"""Darmstadt Noise Dataset (DND): read the benchmark folder, denoise its crops, bundle the submission.

The folder holds ``info.mat`` and ``images_raw/0001.mat …`` / ``images_srgb/0001.mat …``, all MATLAB v7.3
(HDF5): arrays come back transposed and need ``.T``. ``info`` is a struct whose fields hold one HDF5
reference per image: ``boundingboxes`` (20×4, 1-based inclusive ``[row0, col0, row1, col1]``), ``nlf`` (a
struct with ``a`` and ``b``), ``sigma_srgb`` (1×20) and ``sigma_raw`` (indexed ``[xx, yy, box]``).

Protocol: every box of every image is cropped. In raw mode each crop is split into its four Bayer phases
``crop[yy::2, xx::2]``, each phase is denoised on its own with the image's (a, b) and the phase's σ, and the
phases are interleaved again. Each result is saved as ``%04d_%02d.mat`` (``Idenoised_crop``, float32), and
``bundle_submission`` collects them into the 50 files that are uploaded. The ground truth is private.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import scipy.io

DND_SITE = "https://noise.visinf.tu-darmstadt.de/"
N_IMAGES = 50
N_BOXES = 20
EVAL_VERSION = "1.0"
MODES = {"raw": ("images_raw", "Inoisy"), "srgb": ("images_srgb", "InoisySRGB")}


class DndMissingFileError(FileNotFoundError):
    """A file of the DND folder (or of a submission in progress) is missing."""


class NoiseLevel(NamedTuple):
    """What a denoiser is told: the image's raw noise level function (a, b) and the σ of the crop or phase."""

    a: float
    b: float
    sigma: float


Denoiser = Callable[[np.ndarray, NoiseLevel], np.ndarray]


@dataclass(frozen=True)
class DndInfo:
    """The contents of ``info.mat``, one entry per image.

    ``boxes[i]``: int ``(n_boxes, 4)``, 1-based inclusive ``[row0, col0, row1, col1]``; ``nlf[i]``: (a, b);
    ``sigma_raw[i]``: ``(2, 2, n_boxes)`` indexed ``[xx, yy, box]``; ``sigma_srgb[i]``: ``(n_boxes,)``.
    """

    boxes: list[np.ndarray]
    nlf: list[tuple[float, float]]
    sigma_raw: list[np.ndarray]
    sigma_srgb: list[np.ndarray]


class DndCrop(NamedTuple):
    """One benchmark crop; ``image`` and ``box`` are 0-based.

    ``noisy`` is float32, ``H×W`` (raw Bayer mosaic) or ``H×W×3`` (sRGB). ``sigma`` is ``(2, 2)`` indexed
    ``[yy, xx]`` (the phase ``crop[yy::2, xx::2]``) in raw mode and a 0-d array in sRGB mode.
    """

    image: int
    box: int
    noisy: np.ndarray
    a: float
    b: float
    sigma: np.ndarray


class Bundle(NamedTuple):
    """The contents of one bundled submission file."""

    crops: list[np.ndarray]
    israw: bool
    eval_version: str


def read_info(root: Path, n_images: int = N_IMAGES) -> DndInfo:
    """Read boxes, noise level functions and σ values of the first ``n_images`` images from ``info.mat``."""
    with _open_h5(Path(root) / "info.mat") as f:
        info = f["info"]
        fields = {name: _dereference(f, info[name], n_images) for name in _INFO_FIELDS}
        info = DndInfo(
            boxes=[np.rint(np.asarray(ds).T).astype(np.int64) for ds in fields["boundingboxes"]],
            nlf=[(_scalar(group["a"]), _scalar(group["b"])) for group in fields["nlf"]],
            sigma_raw=[np.asarray(ds, dtype=np.float64) for ds in fields["sigma_raw"]],
            sigma_srgb=[np.asarray(ds, dtype=np.float64).reshape(-1) for ds in fields["sigma_srgb"]],
        )
    _check_shapes(info)
    return info


def dataset_size(root: Path) -> tuple[int, int]:
    """(images, boxes per image) that ``info.mat`` describes (50 × 20 for the real benchmark)."""
    with _open_h5(Path(root) / "info.mat") as f:
        n_images = int(np.asarray(f["info"]["boundingboxes"]).size)
    return n_images, len(read_info(root, n_images).boxes[0])


def iter_crops(root: Path, mode: str = "raw", *, n_images: int = N_IMAGES) -> Iterator[DndCrop]:
    """Yield every crop, image by image and box by box; every needed file is checked before the first crop."""
    folder, key = _mode(mode)
    paths = [Path(root) / folder / f"{i + 1:04d}.mat" for i in range(n_images)]
    for path in paths:
        _require(path)
    info = read_info(root, n_images)
    for i, path in enumerate(paths):
        with _open_h5(path) as f:
            image = np.asarray(f[key], dtype=np.float32).T
        a, b = info.nlf[i]
        for k, (r0, c0, r1, c1) in enumerate(info.boxes[i]):
            noisy = np.ascontiguousarray(image[r0 - 1 : r1, c0 - 1 : c1])
            sigma = info.sigma_raw[i][:, :, k].T if mode == "raw" else np.asarray(info.sigma_srgb[i][k])
            yield DndCrop(i, k, noisy, a, b, sigma)


def denoise_raw_crop(crop: DndCrop, denoiser: Denoiser) -> np.ndarray:
    """Denoise each Bayer phase ``crop[yy::2, xx::2]`` separately with its own σ, then re-interleave."""
    out = np.empty_like(crop.noisy)
    for yy in range(2):
        for xx in range(2):
            phase = crop.noisy[yy::2, xx::2].copy()
            level = NoiseLevel(crop.a, crop.b, float(crop.sigma[yy, xx]))
            out[yy::2, xx::2] = _checked(denoiser(phase, level), phase.shape)
    return out


def denoise_srgb_crop(crop: DndCrop, denoiser: Denoiser) -> np.ndarray:
    """Denoise an sRGB crop as a whole with its σ."""
    return _checked(
        denoiser(crop.noisy.copy(), NoiseLevel(crop.a, crop.b, float(crop.sigma))), crop.noisy.shape
    )


def denoise_dnd(
    root: Path, out_dir: Path, denoiser: Denoiser, *, mode: str = "raw", n_images: int = N_IMAGES
) -> list[Path]:
    """Run the benchmark protocol of ``mode`` on every crop and save one ``%04d_%02d.mat`` per crop."""
    _mode(mode)
    denoise = denoise_raw_crop if mode == "raw" else denoise_srgb_crop
    crops = iter_crops(root, mode, n_images=n_images)
    return [write_crop(out_dir, crop.image, crop.box, denoise(crop, denoiser)) for crop in crops]


def crop_path(out_dir: Path, image: int, box: int) -> Path:
    """``out_dir/%04d_%02d.mat`` of the 0-based image and box (the file name is 1-based)."""
    return Path(out_dir) / f"{image + 1:04d}_{box + 1:02d}.mat"


def write_crop(out_dir: Path, image: int, box: int, denoised: np.ndarray) -> Path:
    """Save one denoised crop as ``Idenoised_crop`` (float32)."""
    path = crop_path(out_dir, image, box)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"Idenoised_crop": np.asarray(denoised, dtype=np.float32)})
    return path


def bundle_submission(
    crop_dir: Path,
    *,
    israw: bool,
    out_dir: Path | None = None,
    n_images: int = N_IMAGES,
    n_boxes: int = N_BOXES,
) -> list[Path]:
    """Collect the per-crop files into ``bundled/0001.mat …`` (default: under ``crop_dir``) for upload.

    Each file holds ``Idenoised`` (a 1×n_boxes cell of float32 crops), ``israw`` (logical) and
    ``eval_version = "1.0"``. Every crop file is checked before anything is written.
    """
    crop_dir = Path(crop_dir)
    out_dir = crop_dir / "bundled" if out_dir is None else Path(out_dir)
    paths = [[crop_path(crop_dir, i, k) for k in range(n_boxes)] for i in range(n_images)]
    for path in (p for row in paths for p in row):
        if not path.is_file():
            raise DndMissingFileError(f"denoised crop {path} is missing; run every crop before bundling")
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_write_bundle(out_dir / f"{i + 1:04d}.mat", row, israw) for i, row in enumerate(paths)]


def read_bundle(path: Path) -> Bundle:
    """Read a bundled submission file back (to check it before upload)."""
    contents = scipy.io.loadmat(path)
    crops = [np.asarray(crop) for crop in contents["Idenoised"].ravel()]
    return Bundle(crops, bool(contents["israw"].item()), str(contents["eval_version"].item()))


_INFO_FIELDS = ("boundingboxes", "nlf", "sigma_raw", "sigma_srgb")


def _write_bundle(path: Path, crop_files: list[Path], israw: bool) -> Path:
    # A MATLAB cell needs an object array filled element by element: np.array(list_of_crops, dtype=object)
    # would turn equally sized crops into one numeric array.
    cell = np.empty(len(crop_files), dtype=object)
    for k, crop_file in enumerate(crop_files):
        cell[k] = scipy.io.loadmat(crop_file)["Idenoised_crop"].astype(np.float32)
    scipy.io.savemat(path, {"Idenoised": cell, "israw": bool(israw), "eval_version": EVAL_VERSION})
    return path


def _mode(mode: str) -> tuple[str, str]:
    if mode not in MODES:
        raise ValueError(f"unknown DND mode {mode!r}; expected one of {sorted(MODES)}")
    return MODES[mode]


def _require(path: Path) -> None:
    if not path.is_file():
        raise DndMissingFileError(
            f"DND file {path} is missing. The Darmstadt Noise Dataset is downloaded by hand after a "
            f"registration at {DND_SITE} (downloads: {DND_SITE}downloads/); point the pipeline at the "
            "unpacked folder."
        )


def _open_h5(path: Path) -> h5py.File:
    _require(path)
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not a MATLAB v7.3 (HDF5) file, as the DND files are")
    return h5py.File(path, "r")


def _dereference(f: h5py.File, refs: h5py.Dataset, n_images: int) -> list:
    flat = np.asarray(refs).reshape(-1)
    if len(flat) < n_images:
        raise ValueError(f"info.mat describes {len(flat)} images, fewer than the {n_images} requested")
    return [f[ref] for ref in flat[:n_images]]


def _check_shapes(info: DndInfo) -> None:
    arrays = zip(info.boxes, info.sigma_raw, info.sigma_srgb, strict=True)
    for i, (boxes, sigma_raw, sigma_srgb) in enumerate(arrays):
        n = len(boxes)
        if boxes.shape != (n, 4) or sigma_raw.shape != (2, 2, n) or sigma_srgb.shape != (n,):
            raise ValueError(
                f"info.mat, image {i + 1}: expected boxes (n, 4), sigma_raw (2, 2, n), sigma_srgb (n,); got "
                f"{boxes.shape}, {sigma_raw.shape}, {sigma_srgb.shape}"
            )


def _scalar(dataset: h5py.Dataset) -> float:
    return float(np.asarray(dataset).reshape(-1)[0])


def _checked(result: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    result = np.asarray(result, dtype=np.float32)
    if result.shape != shape:
        raise ValueError(f"the denoiser returned shape {result.shape} for an input of shape {shape}")
    return result
