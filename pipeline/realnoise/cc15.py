"""CC15 (Nam et al., CVPR 2016): pair its files by crop and score them as the published tables do.

The 45 files are ``<crop>_<kind>.png`` with kind ``real`` (the noisy photograph, the input), ``mean`` (the mean of
repeated shots, the ground truth) and ``ours`` (Nam et al.'s "CC" result). The prepare stage stores them as they
are, so ``data/prepared/cc15`` holds 45 images whose ids are the file stems; :func:`paired_files` groups them by
crop, for a prepared folder (read through its manifest) or any folder of the PNGs (the download or the mirror).

Scores follow ``csnr.m`` of the MCWNNM/TWSC code (:func:`psnr_rgb`): one MSE per RGB channel over the whole crop,
no border removed, their mean, then ``10·log10(peak² / MSE)``. Averaging per-channel PSNRs instead (another
``csnr.m`` variant in circulation) gives 36.99 dB instead of the published 36.88 dB for the CC column.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.images import read_image
from pipeline.data.prepare import is_prepared, load_manifest
from pipeline.errors import UserError

NOISY, CLEAN, NAM = "real", "mean", "ours"
KINDS = (NOISY, CLEAN, NAM)


class PairingError(UserError, ValueError):
    """Files that do not form complete (noisy, mean) pairs; the message names the crop or file."""


@dataclass(frozen=True)
class PairedFiles:
    """The files of one crop, by kind (``real``, ``mean`` and, where present, ``ours``)."""

    image: str
    files: dict[str, Path]

    @property
    def noisy(self) -> Path:
        return self.files[NOISY]

    @property
    def clean(self) -> Path:
        return self.files[CLEAN]


def psnr_rgb(estimate: np.ndarray, reference: np.ndarray, data_range: float = 255.0) -> float:
    """``csnr.m``: 10·log10(data_range² / the mean of the per-channel MSEs); a gray image is one channel."""
    estimate = np.atleast_3d(np.asarray(estimate, dtype=np.float64))
    reference = np.atleast_3d(np.asarray(reference, dtype=np.float64))
    if estimate.shape != reference.shape:
        raise ValueError(f"shape mismatch: estimate {estimate.shape} vs reference {reference.shape}")
    mse = float(((estimate - reference) ** 2).mean(axis=(0, 1)).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def split_stem(stem: str) -> tuple[str, str]:
    """``"d800_iso1600_2_real"`` → ``("d800_iso1600_2", "real")``."""
    image, _, kind = stem.rpartition("_")
    if not image or kind not in KINDS:
        raise PairingError(f"{stem!r} is not a CC15 file name (<crop>_{{{','.join(KINDS)}}})")
    return image, kind


def group_stems(stems: Iterable[str]) -> dict[str, dict[str, str]]:
    """The stems grouped by crop, sorted by crop (the published row order); each crop needs a noisy and a mean."""
    groups: dict[str, dict[str, str]] = {}
    for stem in stems:
        image, kind = split_stem(stem)
        if kind in groups.setdefault(image, {}):
            raise PairingError(f"crop {image!r} has two {kind!r} files")
        groups[image][kind] = stem
    for image, kinds in groups.items():
        missing = [kind for kind in (NOISY, CLEAN) if kind not in kinds]
        if missing:
            raise PairingError(f"crop {image!r} has no {' or '.join(missing)} image")
    return dict(sorted(groups.items()))


def folder_stems(folder: Path) -> list[str]:
    """The image ids of a prepared folder (its manifest), else the stems of the folder's PNGs."""
    if is_prepared(folder):
        return load_manifest(folder, folder.name)["image"].tolist()
    return [path.stem for path in folder.glob("*.png")]


def paired_files(folder: Path) -> list[PairedFiles]:
    """Every crop of a CC15 folder with its files, sorted by crop."""
    folder = Path(folder)
    groups = group_stems(folder_stems(folder))
    if not groups:
        raise PairingError(f"{folder}: no CC15 images")
    return [
        PairedFiles(image, {kind: folder / f"{stem}.png" for kind, stem in kinds.items()})
        for image, kinds in groups.items()
    ]


def read_pairs(folder: Path) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(crop, noisy, mean)`` uint8 RGB arrays for every crop of a CC15 folder, sorted by crop."""
    for pair in paired_files(folder):
        noisy, clean = read_image(pair.noisy), read_image(pair.clean)
        if noisy.shape != clean.shape:
            raise PairingError(f"crop {pair.image!r}: noisy {noisy.shape} and mean {clean.shape} differ in shape")
        yield pair.image, noisy, clean
