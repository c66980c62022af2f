"""Image pairs with putative matches, their sharded Parquet tables, and the per-pair degeneracy screen.

A split folder holds shard pairs ``matches-NNNNN.parquet`` and ``pairs-NNNNN.parquet`` (256 pairs each by
default). ``matches``: one row per putative match, in the pair's stored order (CNet truncates batches to the
first ``n`` matches, so order matters):

=========  =======  ===============================================================================
column     type     meaning
=========  =======  ===============================================================================
pair_id    string   the pair
index      int32    position of the match within its pair
x1 … y2    float32  calibrated (K-normalised) coordinates in image 1 and image 2
ratio      float32  side information: Lowe's ratio of 1st/2nd descriptor distance (NaN if not known)
episym     float32  symmetric squared epipolar distance under the ground-truth pose
label      int8     1 inlier, 0 outlier, −1 unknown (masked out of losses and metrics)
=========  =======  ===============================================================================

``pairs``: one row per pair: ``pair_id, dataset, split, source, image1, image2`` (strings),
``width1, height1, width2, height2`` (int32), ``K1, K2`` (9 float64, row-major pixel intrinsics),
``R`` (9), ``t`` (3, unit), ``E`` (9, ``[t]ₓR`` with unit Frobenius norm), ``n_matches`` (int32).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.correspondence.geometry import episym, essential

INLIER, OUTLIER, UNKNOWN = 1, 0, -1
MIN_MATCHES = 8
COLLINEAR_TOLERANCE = 1e-5  # relative singular value; coordinates are float32
UNIT_TOLERANCE = 1e-12
COORDINATES = ("x1", "y1", "x2", "y2")

MATCH_SCHEMA = pa.schema(
    [("pair_id", pa.string()), ("index", pa.int32())]
    + [(name, pa.float32()) for name in (*COORDINATES, "ratio", "episym")]
    + [("label", pa.int8())]
)
PAIR_SCHEMA = pa.schema(
    [(name, pa.string()) for name in ("pair_id", "dataset", "split", "source", "image1", "image2")]
    + [(name, pa.int32()) for name in ("width1", "height1", "width2", "height2")]
    + [(name, pa.list_(pa.float64())) for name in ("K1", "K2", "R", "t", "E")]
    + [("n_matches", pa.int32())]
)


@dataclass
class Pair:
    """One image pair: ``xs`` (N×4 float32 calibrated coordinates), per-match labels and the ground truth."""

    pair_id: str
    xs: np.ndarray
    label: np.ndarray
    R: np.ndarray
    t: np.ndarray
    K1: np.ndarray
    K2: np.ndarray
    size1: tuple[int, int]
    size2: tuple[int, int]
    ratio: np.ndarray | None = None
    dataset: str = ""
    split: str = ""
    source: str = ""
    images: tuple[str, str] = ("", "")
    episym: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.xs = np.array(self.xs, dtype=np.float32).reshape(-1, 4)  # a writable copy (Parquet's are read-only)
        self.label = np.array(self.label, dtype=np.int8)
        if self.label.shape != (len(self.xs),):
            raise ValueError(f"pair {self.pair_id}: {len(self.xs)} matches but labels of shape {self.label.shape}")
        self.t = np.asarray(self.t, dtype=np.float64)
        if abs(np.linalg.norm(self.t) - 1.0) > UNIT_TOLERANCE:  # keep a stored unit t bit for bit
            self.t = self.t / np.linalg.norm(self.t)
        if self.ratio is None:
            self.ratio = np.full(len(self.xs), np.nan, dtype=np.float32)
        self.episym = episym(self.xs, self.E).astype(np.float32)

    @property
    def E(self) -> np.ndarray:
        return essential(self.R, self.t)

    def __len__(self) -> int:
        return len(self.xs)

    def subset(self, keep: np.ndarray) -> Pair:
        """The same pair restricted to the matches selected by ``keep`` (mask or indices)."""
        return replace(self, xs=self.xs[keep], label=self.label[keep], ratio=self.ratio[keep])


def _match_columns(pair: Pair) -> dict[str, np.ndarray]:
    columns = {name: pair.xs[:, i] for i, name in enumerate(COORDINATES)}
    return {
        "pair_id": np.full(len(pair), pair.pair_id, dtype=object),
        "index": np.arange(len(pair), dtype=np.int32),
        **columns,
        "ratio": pair.ratio,
        "episym": pair.episym,
        "label": pair.label,
    }


def _pair_row(pair: Pair) -> dict[str, object]:
    return {
        "pair_id": pair.pair_id,
        "dataset": pair.dataset,
        "split": pair.split,
        "source": pair.source,
        "image1": pair.images[0],
        "image2": pair.images[1],
        "width1": pair.size1[0],
        "height1": pair.size1[1],
        "width2": pair.size2[0],
        "height2": pair.size2[1],
        **{name: np.ravel(getattr(pair, name)).tolist() for name in ("K1", "K2", "R", "t", "E")},
        "n_matches": len(pair),
    }


def to_tables(pairs: Sequence[Pair]) -> tuple[pa.Table, pa.Table]:
    """``(matches, pairs)`` Arrow tables with :data:`MATCH_SCHEMA` and :data:`PAIR_SCHEMA`."""
    if not pairs:
        return MATCH_SCHEMA.empty_table(), PAIR_SCHEMA.empty_table()
    parts = [_match_columns(pair) for pair in pairs]
    matches = {name: np.concatenate([part[name] for part in parts]) for name in MATCH_SCHEMA.names}
    rows = pa.Table.from_pylist([_pair_row(pair) for pair in pairs], schema=PAIR_SCHEMA)
    return pa.table(matches, schema=MATCH_SCHEMA), rows


def write_pairs(pairs: Iterable[Pair], folder: Path, pairs_per_shard: int = 256) -> int:
    """Write ``pairs`` as shards ``matches-NNNNN.parquet`` + ``pairs-NNNNN.parquet``; returns the pair count.

    ``pairs`` is consumed lazily, so a generator of any length needs memory for one shard only.
    """
    folder.mkdir(parents=True, exist_ok=True)
    shard, count = [], 0
    for pair in pairs:
        shard.append(pair)
        if len(shard) == pairs_per_shard:
            _write_shard(shard, folder, count // pairs_per_shard)
            count, shard = count + len(shard), []
    if shard or not count:
        _write_shard(shard, folder, count // pairs_per_shard)
    return count + len(shard)


def _write_shard(pairs: Sequence[Pair], folder: Path, index: int) -> None:
    matches, rows = to_tables(pairs)
    pq.write_table(matches, folder / f"matches-{index:05d}.parquet")
    pq.write_table(rows, folder / f"pairs-{index:05d}.parquet")


def read_pairs(folder: Path, limit: int | None = None) -> list[Pair]:
    """The first ``limit`` (default all) pairs stored by :func:`write_pairs`, in their stored order."""
    pairs: list[Pair] = []
    for rows_path in sorted(folder.glob("pairs-*.parquet")):
        if limit is not None and len(pairs) >= limit:
            break
        rows = pq.read_table(rows_path).to_pylist()
        matches = pq.read_table(rows_path.with_name(rows_path.name.replace("pairs-", "matches-"))).to_pandas()
        offsets = np.concatenate([[0], np.cumsum([row["n_matches"] for row in rows])])
        for row, start, stop in zip(rows, offsets[:-1], offsets[1:], strict=True):
            pairs.append(_from_row(row, matches.iloc[start:stop]))
    return pairs[:limit]


def _from_row(row: dict, matches: pd.DataFrame) -> Pair:
    if len(matches) and not (matches["pair_id"] == row["pair_id"]).all():
        raise ValueError(f"matches of pair {row['pair_id']!r} are not stored together in their shard")
    return Pair(
        pair_id=row["pair_id"],
        xs=matches[list(COORDINATES)].to_numpy(np.float32),
        label=matches["label"].to_numpy(np.int8),
        ratio=matches["ratio"].to_numpy(np.float32),
        R=np.reshape(row["R"], (3, 3)),
        t=np.asarray(row["t"]),
        K1=np.reshape(row["K1"], (3, 3)),
        K2=np.reshape(row["K2"], (3, 3)),
        size1=(row["width1"], row["height1"]),
        size2=(row["width2"], row["height2"]),
        dataset=row["dataset"],
        split=row["split"],
        source=row["source"],
        images=(row["image1"], row["image2"]),
    )


def _collinear(points: np.ndarray) -> bool:
    singular = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
    return bool(singular[0] == 0.0 or singular[-1] <= COLLINEAR_TOLERANCE * singular[0])


def degeneracy(pair: Pair) -> str | None:
    """Why a (NaN-free) pair cannot define a pose: ``too_few_matches``, ``collinear``, or None if fine."""
    if len(pair) < MIN_MATCHES:
        return "too_few_matches"
    xs = pair.xs.astype(np.float64)
    if _collinear(xs[:, :2]) or _collinear(xs[:, 2:]):
        return "collinear"
    return None


def drop_non_finite(pair: Pair) -> tuple[Pair, int]:
    """The pair without matches that have a NaN or infinite coordinate, and how many were dropped."""
    finite = np.isfinite(pair.xs).all(axis=1)
    return (pair, 0) if finite.all() else (pair.subset(finite), int((~finite).sum()))


@dataclass
class Screened:
    """Usable pairs (matches with non-finite coordinates dropped) and counts of what the screen removed."""

    pairs: list[Pair]
    counts: Counter


def screen(pairs: Iterable[Pair]) -> Screened:
    """Drop NaN/inf matches and degenerate pairs, counting ``nan_pairs``, ``nan_matches`` and each reason."""
    kept, counts = [], Counter()
    for pair in pairs:
        pair, dropped = drop_non_finite(pair)
        if dropped:
            counts["nan_pairs"] += 1
            counts["nan_matches"] += dropped
        reason = degeneracy(pair)
        if reason is None:
            kept.append(pair)
        else:
            counts[reason] += 1
    return Screened(kept, counts)
