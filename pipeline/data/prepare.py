"""Turn a registry entry into ``data/prepared/<name>/``: lossless PNGs plus ``manifest.parquet``.

The folder appears atomically: it is built beside the target and renamed into place, so an interrupted
prepare leaves the previous result (or nothing), never half a dataset.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.data import sample
from pipeline.data.catalog import Archive, Dataset, FileList, Folder, Generated, Manual
from pipeline.data.download import DownloadError, RemoteFile, fetch
from pipeline.data.images import IMAGE_SUFFIXES, ImageReadError, read_image, write_png
from pipeline.errors import UserError

MANIFEST = "manifest.parquet"
MANIFEST_COLUMNS = ["image", "split", "height", "width", "channels", "source", "sha256"]


class DatasetError(UserError, RuntimeError):
    """A dataset that cannot be prepared or read; the message names it and says what to do."""


def _mirror_has(mirror: Path | None, listing: FileList) -> bool:
    return mirror is not None and all((mirror / listing.mirror_dir / name).is_file() for name, _ in listing.entries())


def _listed_files(dataset: Dataset, listing: FileList, raw: Path, mirror: Path | None) -> Iterator[Path]:
    for name, digest in listing.entries():
        remote = RemoteFile(f"{listing.base_url}/{name}", digest, mirror_path=f"{listing.mirror_dir}/{name}")
        yield fetch(remote, raw / listing.mirror_dir / name, dataset=dataset.name, mirror=mirror)


def _archive_files(dataset: Dataset, archive: Archive, raw: Path, mirror: Path | None) -> Iterator[Path]:
    from pipeline.data.archive import extract

    remote = RemoteFile(archive.url, archive.sha256 or "", archive.size, archive.mirror_path)
    local = fetch(remote, raw / Path(archive.mirror_path).name, dataset=dataset.name, mirror=mirror)
    target = raw / "extracted"
    if not target.exists():
        extract(local, target, members=lambda member: Path(member).match(archive.members))
    yield from sorted(path for path in target.rglob("*") if path.is_file())


def _manual_files(dataset: Dataset, manual: Manual, mirror: Path | None) -> Iterator[Path]:
    folder = mirror / "datasets" / dataset.name if mirror else None
    if folder is None or not folder.is_dir():
        raise DatasetError(f"dataset {dataset.name!r} cannot be downloaded automatically. {manual.instructions}")
    yield from sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)


def _folder_files(dataset: Dataset, folder: Folder) -> Iterator[Path]:
    if not folder.path.is_dir():
        raise DatasetError(f"dataset {dataset.name!r}: folder {folder.path} does not exist")
    files = sorted(path for path in folder.path.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"dataset {dataset.name!r}: no images ({', '.join(IMAGE_SUFFIXES)}) in {folder.path}")
    yield from files


def source_images(dataset: Dataset, raw: Path, mirror: Path | None) -> Iterator[tuple[str, str, np.ndarray]]:
    """``(image id, source file, uint8 array)`` for every image of the dataset, before conversion."""
    if dataset.mirror_copy is not None and _mirror_has(mirror, dataset.mirror_copy):
        for path in _listed_files(dataset, dataset.mirror_copy, raw, mirror):
            yield path.stem, path.name, read_image(path)
        return
    for source in dataset.sources:
        if isinstance(source, Generated):
            for image_id, array in sample.generate(source.recipe):
                yield image_id, f"skimage:{image_id}", array
            continue
        if isinstance(source, FileList):
            paths = _listed_files(dataset, source, raw, mirror)
        elif isinstance(source, Archive):
            paths = _archive_files(dataset, source, raw, mirror)
        elif isinstance(source, Manual):
            paths = _manual_files(dataset, source, mirror)
        else:
            paths = _folder_files(dataset, source)
        for path in paths:
            yield path.stem, path.name, read_image(path)


def convert(dataset: Dataset, array: np.ndarray) -> np.ndarray:
    """Apply the entry's colour protocol to one source image (gray sources stay as they are)."""
    from pipeline.protocols.color import rgb2gray_matlab, rgb2gray_pil

    if dataset.color == "rgb" or array.ndim == 2:
        return array
    return rgb2gray_pil(array) if dataset.conversion == "gray_pil" else rgb2gray_matlab(array)


def _build(dataset: Dataset, staging: Path, raw: Path, mirror: Path | None) -> pd.DataFrame:
    rows = []
    images = source_images(dataset, raw, mirror)
    for image_id, source, array in tqdm(images, desc=f"prepare {dataset.name}", unit="img", leave=False):
        stored = convert(dataset, array)
        digest = write_png(staging / f"{image_id}.png", stored)
        channels = 1 if stored.ndim == 2 else stored.shape[2]
        rows.append((image_id, dataset.split, *stored.shape[:2], channels, source, digest))
    if not rows:
        raise DatasetError(f"dataset {dataset.name!r} has no images")
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def prepare(dataset: Dataset, out: Path, *, raw: Path, mirror: Path | None = None) -> pd.DataFrame:
    """Build ``out`` (PNGs + manifest) for ``dataset``; ``raw`` keeps verified downloads between runs."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        manifest = _build(dataset, staging, raw / dataset.name, mirror)
        manifest.to_parquet(staging / MANIFEST, index=False)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except (DownloadError, ImageReadError) as error:
        raise DatasetError(f"dataset {dataset.name!r}: {error}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return manifest


def load_manifest(folder: Path, name: str) -> pd.DataFrame:
    """The manifest of a prepared dataset, or a clear error saying how to prepare it."""
    path = folder / MANIFEST
    if not path.exists():
        raise DatasetError(
            f"dataset {name!r} is not prepared ({path} is missing): run `dvc repro prepare@{name}` "
            f"or `n3bench datasets prepare {name}`"
        )
    return pd.read_parquet(path)


def is_prepared(folder: Path) -> bool:
    return (folder / MANIFEST).exists()
