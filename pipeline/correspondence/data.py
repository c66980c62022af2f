"""Correspondence datasets by name, prepared once into Parquet split folders and then loaded as pairs.

``synthetic``
    the seeded two-view generator (:mod:`.synthetic`), ``train``/``val``/``test`` splits.
``stereo_motorcycle``
    scikit-image's rectified stereo pair with SIFT matches (:mod:`.stereo`), one ``test`` pair.
``st_peters``, ``reichstag``, ``brown_bm_3_05``
    the paper's datasets from CNet's raw dumps (:mod:`.dumps`).

A prepared folder holds ``<split>/`` shard folders (:mod:`.tables`) and ``manifest.json`` (what was built,
with which settings and OpenCV version); it is built in a hidden sibling and renamed, so it is complete or
absent.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import paths
from pipeline.correspondence.dumps import DUMPS, prepare_dump
from pipeline.correspondence.features import OPENCV_VERSION
from pipeline.correspondence.synthetic import SyntheticConfig, generate
from pipeline.correspondence.tables import Pair, read_pairs, write_pairs
from pipeline.errors import UserError
from pipeline.registry import UnknownNameError

SYNTHETIC = "synthetic"
STEREO = "stereo_motorcycle"
DATASETS = (SYNTHETIC, STEREO, *DUMPS)
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class PrepareOptions:
    """How datasets are built: synthetic pair counts and generator settings, real-data caps and checksum."""

    seed: int = 0
    synthetic_pairs: dict[str, int] = field(default_factory=lambda: {"train": 2000, "val": 100, "test": 200})
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    pair_caps: dict[str, int] | None = None
    sha256: str | None = None
    pairs_per_shard: int = 256


def _build(dataset: str, staging: Path, raw: Path, mirror: Path | None, options: PrepareOptions) -> dict[str, Any]:
    if dataset == SYNTHETIC:
        counts = {
            split: write_pairs(generate(options.seed, split, n, options.synthetic), staging / split,
                               options.pairs_per_shard)
            for split, n in options.synthetic_pairs.items()
        }
        return {"pairs": counts, "seed": options.seed, "config": asdict(options.synthetic)}
    if dataset == STEREO:
        from pipeline.correspondence.stereo import motorcycle_pair

        return {"pairs": {"test": write_pairs([motorcycle_pair()], staging / "test")}}
    if dataset in DUMPS:
        counts = prepare_dump(DUMPS[dataset], staging, raw=raw, mirror=mirror, sha256=options.sha256,
                              caps=options.pair_caps)
        return {"counts": counts, "pair_caps": options.pair_caps}
    raise UnknownNameError(f"unknown correspondence dataset {dataset!r}; valid names: {', '.join(DATASETS)}")


def prepare(
    dataset: str,
    out: Path | None = None,
    *,
    raw: Path | None = None,
    mirror: Path | None = None,
    options: PrepareOptions | None = None,
) -> dict[str, Any]:
    """Build ``dataset`` into ``out`` (default ``data/correspondence/<dataset>``), replacing it; returns its
    manifest."""
    out = Path(out or paths.correspondence(dataset))
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    manifest = {"dataset": dataset, "opencv": OPENCV_VERSION}
    manifest |= _build(dataset, staging, Path(raw or paths.raw()), mirror, options or PrepareOptions())
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    return manifest


def view_images(pair: Pair) -> tuple[np.ndarray, np.ndarray] | None:
    """The two photographs of a pair where they ship with the code (the stereo sample), else None."""
    if pair.dataset != STEREO:
        return None
    from skimage import data

    left, right, _ = data.stereo_motorcycle()
    return left, right


def is_prepared(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def load_pairs(
    dataset: str,
    split: str = "test",
    *,
    folder: Path | None = None,
    max_pairs: int | None = None,
    raw: Path | None = None,
    mirror: Path | None = None,
    options: PrepareOptions | None = None,
) -> list[Pair]:
    """The first ``max_pairs`` pairs of a split, preparing the dataset first if its folder is not built."""
    folder = Path(folder or paths.correspondence(dataset))
    if not is_prepared(folder):
        prepare(dataset, folder, raw=raw, mirror=mirror, options=options)
    if not (folder / split).is_dir():
        splits = sorted(path.name for path in folder.iterdir() if path.is_dir())
        raise UserError(f"correspondence dataset {dataset!r} has no split {split!r} (it has {', '.join(splits)})")
    return read_pairs(folder / split, max_pairs)
