"""The paper's correspondence datasets (CNet's St. Peter's, Reichstag and Brown dumps): download, verify, convert.

Each archive unpacks to one top folder with ``train/``, ``val/`` and ``test/`` split folders in CNet's raw
layout (spec §4.1): ``images.txt``, ``calibration.txt`` and ``visibility.txt`` list, one line per image and in
the same order, paths relative to the split folder of the image, its ``calibration_*.h5`` (``K`` with the
principal point stored as an offset from the image centre, world→camera ``R`` and ``T``) and its
``vis_*.txt`` (one row of co-visibility values against every image of the split).

Conversion follows CNet's dump (spec §1.8): SIFT with 2000 keypoints and ``contrastThreshold = 1e-5``, the
single nearest neighbour, coordinates normalised with ``cx = (w − 1)/2 + K[0, 2]``; ordered pairs with
co-visibility above the dataset's threshold, shuffled with seed 1234 and capped per split; relative pose
``dR = R_j R_iᵀ``, ``dt = T_j − dR T_i`` (pairs with ``‖dt‖ ≤ 1e-5`` are skipped and counted); labels
``episym < 1e-4``.

No checksums are published for the archives. A checksum comes from the caller, the registry, or a pin file
``<raw>/<archive>.sha256`` that is written the first time a local copy (in ``raw`` or the mirror) is used;
without one, nothing is downloaded unverified and the error says how to provide the file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from pipeline.correspondence.features import OPENCV_VERSION, detect, nearest_neighbours
from pipeline.correspondence.geometry import episym, essential, normalise_pixels, relative_pose
from pipeline.correspondence.tables import Pair, write_pairs
from pipeline.data.archive import extract
from pipeline.data.download import ChecksumError, DownloadError, RemoteFile, fetch, sha256_file

PRIMARY = "https://www.cs.ubc.ca/research/kmyi_data/files/2018/learned-correspondence"
LEGACY = "http://webhome.cs.uvic.ca/~kyi/files/2018/learned-correspondence"
SPLITS = ("train", "val", "test")
PAIR_CAPS = {"train": 10_000, "val": 1_000, "test": 1_000}
PAIR_SEED = 1234
LABEL_THRESHOLD = 1e-4
MIN_TRANSLATION = 1e-5
FEATURE_CACHE = 64


@dataclass(frozen=True)
class Dump:
    """One archive of raw split folders: where it is published and how its pairs are selected."""

    name: str
    folder: str
    vis_threshold: float
    urls: tuple[str, ...]
    sha256: str | None = None
    size: int | None = None

    @property
    def archive(self) -> str:
        return f"{self.folder}.tar.gz"

    @property
    def mirror_path(self) -> str:
        return f"datasets/{self.name}/{self.archive}"


def _published(name: str, folder: str, vis_threshold: float) -> Dump:
    return Dump(name, folder, vis_threshold, tuple(f"{base}/{folder}.tar.gz" for base in (PRIMARY, LEGACY)))


DUMPS = {
    dump.name: dump
    for dump in (
        _published("st_peters", "st_peters_square", 100),
        _published("reichstag", "reichstag", 100),
        _published("brown_bm_3_05", "brown_bm_3---brown_bm_3-maxpairs-10000-random---skip-10-dilate-25", 0.5),
    )
}


# ---- download ------------------------------------------------------------------------------------------------
def _pin_file(dump: Dump, raw: Path) -> Path:
    return raw / f"{dump.archive}.sha256"


def _checksum(dump: Dump, raw: Path, mirror: Path | None, sha256: str | None) -> str:
    """The SHA-256 to verify against; pins the one of a local copy on first use."""
    pin = _pin_file(dump, raw)
    known = sha256 or dump.sha256 or (pin.read_text().split()[0] if pin.is_file() else None)
    if known:
        return known
    local = [raw / dump.archive] + ([mirror / dump.mirror_path] if mirror is not None else [])
    found = next((path for path in local if path.is_file()), None)
    if found is None:
        raise DownloadError(
            f"dataset {dump.name!r}: no SHA-256 is published for {dump.archive}, so n3bench does not download it "
            f"unverified.\nEither download it yourself from\n  " + "\n  ".join(dump.urls) + "\n"
            f"and place it at {(raw / dump.archive).absolute()} (or as {dump.mirror_path} in the mirror): its "
            f"checksum is then recorded in {pin}; or give the SHA-256 you trust."
        )
    digest = sha256_file(found)
    pin.parent.mkdir(parents=True, exist_ok=True)
    pin.write_text(f"{digest}  {dump.archive}\n")
    return digest


def _fetch_any(dump: Dump, digest: str, raw: Path, mirror: Path | None) -> Path:
    """The verified archive from the mirror, the primary URL or the legacy one, in that order."""
    failures = []
    for url in dump.urls:
        remote = RemoteFile(url, digest, dump.size, dump.mirror_path)
        try:
            return fetch(remote, raw / dump.archive, dataset=dump.name, mirror=mirror)
        except ChecksumError:
            raise
        except DownloadError as error:
            failures.append(str(error))
    raise DownloadError("\n\n".join(failures) or f"dataset {dump.name!r} lists no URL")


def download(dump: Dump, raw: Path, *, mirror: Path | None = None, sha256: str | None = None) -> Path:
    """The extracted top folder of ``dump`` under ``raw/extracted/<name>/``, downloaded and verified if needed."""
    archive = _fetch_any(dump, _checksum(dump, raw, mirror, sha256), raw, mirror)
    target = raw / "extracted" / dump.name
    if not target.exists():
        extract(archive, target)
    folder = target / dump.folder
    if not folder.is_dir():
        raise DownloadError(f"dataset {dump.name!r}: {archive} has no top folder {dump.folder}/")
    return folder


# ---- conversion ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class View:
    """One image of a split: its path, the raw calibration (``K`` with a centre-offset principal point), R, T."""

    image: str
    K: np.ndarray
    R: np.ndarray
    T: np.ndarray


@dataclass(frozen=True)
class Features:
    """SIFT keypoints (pixels), descriptors, the pixel intrinsics with absolute principal point, (w, h)."""

    points: np.ndarray
    descriptors: np.ndarray
    K: np.ndarray
    size: tuple[int, int]


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_views(split_dir: Path) -> tuple[list[View], np.ndarray]:
    """The split's views and its co-visibility matrix (``vis[i, j]``, −1 on the diagonal)."""
    import h5py

    views = []
    for image, calibration in zip(
        _lines(split_dir / "images.txt"), _lines(split_dir / "calibration.txt"), strict=True
    ):
        with h5py.File(split_dir / calibration, "r") as h5:
            K, R, T = (np.asarray(h5[key], dtype=np.float64) for key in ("K", "R", "T"))
        views.append(View(image, K.reshape(3, 3), R.reshape(3, 3), T.reshape(3)))
    vis = np.stack([np.loadtxt(split_dir / name, ndmin=1) for name in _lines(split_dir / "visibility.txt")])
    if vis.shape != (len(views), len(views)):
        raise ValueError(f"{split_dir}: visibility is {vis.shape} for {len(views)} images")
    return views, vis


def select_pairs(vis: np.ndarray, threshold: float, cap: int, seed: int = PAIR_SEED) -> list[tuple[int, int]]:
    """Ordered pairs ``(i, j)``, ``i ≠ j``, with ``vis[i, j] > threshold``, shuffled with ``seed``, first ``cap``."""
    rows, cols = np.nonzero((vis > threshold) & ~np.eye(len(vis), dtype=bool))
    order = np.random.RandomState(seed).permutation(len(rows))[:cap]
    return [(int(rows[k]), int(cols[k])) for k in order]


def _features(split_dir: Path, view: View, n_features: int, contrast_threshold: float) -> Features:
    image = cv2.imread(str(split_dir / view.image), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {split_dir / view.image}")
    height, width = image.shape[:2]
    K = view.K.copy()
    K[0, 2] += (width - 1) / 2
    K[1, 2] += (height - 1) / 2
    points, descriptors = detect(image, n_features, contrast_threshold)
    return Features(points, descriptors, K, (width, height))


def convert_split(
    split_dir: Path,
    dump: Dump,
    split: str,
    cap: int,
    counts: Counter | None = None,
    n_features: int = 2000,
    contrast_threshold: float = 1e-5,
) -> Iterator[Pair]:
    """Labelled pairs of one raw split folder, lazily; skipped pairs are counted in ``counts``."""
    views, vis = read_views(split_dir)
    counts = counts if counts is not None else Counter()

    @lru_cache(maxsize=FEATURE_CACHE)
    def features(index: int) -> Features:
        return _features(split_dir, views[index], n_features, contrast_threshold)

    for i, j in select_pairs(vis, dump.vis_threshold, cap):
        R, t = relative_pose(views[i].R, views[i].T, views[j].R, views[j].T)
        if np.linalg.norm(t) <= MIN_TRANSLATION:
            counts[f"{split}_no_translation"] += 1
            continue
        t = t / np.linalg.norm(t)  # the unit t that Pair.E uses, so labels are exactly episym < τ
        first, second = features(i), features(j)
        matches = nearest_neighbours((first.points, first.descriptors), (second.points, second.descriptors))
        xs = np.column_stack([normalise_pixels(matches.uv1, first.K), normalise_pixels(matches.uv2, second.K)])
        xs = xs.astype(np.float32)
        yield Pair(
            pair_id=f"{dump.name}/{split}/{i:06d}-{j:06d}",
            xs=xs,
            label=episym(xs, essential(R, t)) < LABEL_THRESHOLD,
            ratio=matches.ratio,
            R=R,
            t=t,
            K1=first.K,
            K2=second.K,
            size1=first.size,
            size2=second.size,
            dataset=dump.name,
            split=split,
            source=f"{dump.archive} sift={n_features} contrast={contrast_threshold} 1-NN opencv={OPENCV_VERSION}",
            images=(views[i].image, views[j].image),
        )


def prepare_dump(
    dump: Dump,
    out: Path,
    *,
    raw: Path,
    mirror: Path | None = None,
    sha256: str | None = None,
    caps: dict[str, int] | None = None,
) -> dict[str, int]:
    """Download (if needed) and convert every split into ``out/<split>/``; returns pair and skip counts."""
    root = download(dump, raw, mirror=mirror, sha256=sha256)
    caps = {**PAIR_CAPS, **(caps or {})}
    counts: Counter = Counter()
    for split in SPLITS:
        pairs = convert_split(root / split, dump, split, caps[split], counts)
        counts[f"{split}_pairs"] = write_pairs(pairs, out / split)
    return dict(sorted(counts.items()))
