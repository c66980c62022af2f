"""Pose-error evaluation of correspondence methods: per-pair rows, CNet's mAP, inlier precision/recall.

mAP (spec §3.3) is CNet's accumulated-accuracy AUC, not detection mAP: with ``e = max(err_R, err_t)`` per pair
(failures count as 180°/90°), ``acc(θ)`` is the fraction of pairs with ``e < θ`` from a histogram with edges
0, 5, …, 30 (the last bin closed), and ``mAP@θ = mean(acc(5), acc(10), …, acc(θ))``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.correspondence.data import PrepareOptions, load_pairs
from pipeline.correspondence.features import OPENCV_VERSION
from pipeline.correspondence.geometry import pose_errors
from pipeline.correspondence.methods import DEFAULT_RANSAC_THRESHOLD, MATCHERS, Matcher, load_matcher
from pipeline.correspondence.tables import INLIER, OUTLIER, Pair, degeneracy, drop_non_finite

BIN_WIDTH_DEG = 5
MAX_THRESHOLD_DEG = 30
REPORTED_THRESHOLDS = (5, 10, 20)

PER_PAIR = "per_pair.parquet"


def accuracy(errors: np.ndarray) -> np.ndarray:
    """``acc(θ)`` for θ = 5, 10, …, 30 degrees."""
    edges = np.arange(0, MAX_THRESHOLD_DEG + BIN_WIDTH_DEG, BIN_WIDTH_DEG)
    counts, _ = np.histogram(np.asarray(errors, dtype=np.float64), bins=edges)
    return np.cumsum(counts) / max(len(errors), 1)


def mean_average_precision(errors: np.ndarray, threshold: int) -> float:
    """``mAP@threshold`` (a multiple of 5 up to 30) of per-pair errors ``max(err_R, err_t)``."""
    if threshold % BIN_WIDTH_DEG or not BIN_WIDTH_DEG <= threshold <= MAX_THRESHOLD_DEG:
        raise ValueError(f"mAP threshold must be a multiple of {BIN_WIDTH_DEG} up to {MAX_THRESHOLD_DEG}")
    return float(np.mean(accuracy(errors)[: threshold // BIN_WIDTH_DEG]))


def inlier_scores(predicted: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1 of a predicted inlier mask over the matches with known labels (NaN if none)."""
    known = (labels == INLIER) | (labels == OUTLIER)
    if not known.any():
        return float("nan"), float("nan"), float("nan")
    predicted, truth = predicted[known], labels[known] == INLIER
    hits = float(np.sum(predicted & truth))
    precision = hits / max(int(predicted.sum()), 1)
    recall = hits / max(int(truth.sum()), 1)
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)


ROW_COLUMNS = [
    "pair_id", "method", "dataset", "err_R", "err_t", "err", "failed", "degenerate", "nan_matches",
    "precision", "recall", "f1", "n_matches", "n_predicted", "seconds",
]


def evaluate_pair(matcher: Matcher, pair: Pair) -> dict[str, Any]:
    """One pair's errors, inlier scores and timing.

    Matches with non-finite coordinates are dropped first; a pair that is then degenerate (too few matches,
    collinear points) is not run and counts as a failure (180°/90°), with ``degenerate`` naming the reason.
    """
    pair, dropped = drop_non_finite(pair)
    row: dict[str, Any] = {"nan_matches": dropped, "n_matches": len(pair), "degenerate": degeneracy(pair) or ""}
    if row["degenerate"]:
        nan = float("nan")
        err_R, err_t = pose_errors(None, pair.R, pair.t)
        return row | {"err_R": err_R, "err_t": err_t, "err": max(err_R, err_t), "failed": True,
                      "precision": nan, "recall": nan, "f1": nan, "n_predicted": 0, "seconds": 0.0}
    start = time.perf_counter()
    prediction = matcher.predict(pair)
    seconds = time.perf_counter() - start
    err_R, err_t = pose_errors(prediction.pose, pair.R, pair.t)
    precision, recall, f1 = inlier_scores(prediction.inliers, pair.label)
    return row | {
        "err_R": err_R,
        "err_t": err_t,
        "err": max(err_R, err_t),
        "failed": prediction.pose is None,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "n_predicted": int(prediction.inliers.sum()),
        "seconds": seconds,
    }


def summarise(rows: pd.DataFrame, thresholds: Iterable[int] = REPORTED_THRESHOLDS) -> dict[str, Any]:
    """mAPs over all pairs (failures and degenerate pairs included), median errors, mean inlier scores, counts.

    A mean inlier score is None when no pair has known labels.
    """
    errors = rows["err"].to_numpy()
    summary = {f"map{threshold}": mean_average_precision(errors, threshold) for threshold in thresholds}
    summary |= {f"median_{name}": float(rows[name].median()) for name in ("err_R", "err_t")}
    means = {name: rows[name].mean() for name in ("precision", "recall", "f1")}
    summary |= {name: None if np.isnan(mean) else float(mean) for name, mean in means.items()}  # strict JSON
    degenerate = rows.loc[rows["degenerate"] != "", "degenerate"].value_counts()
    return summary | {
        "n_pairs": len(rows),
        "n_failed": int(rows["failed"].sum()),
        "n_degenerate": int(degenerate.sum()),
        **{f"degenerate_{reason}": int(count) for reason, count in sorted(degenerate.items())},
        "nan_matches": int(rows["nan_matches"].sum()),
        "seconds_per_pair": float(rows["seconds"].mean()) if len(rows) else 0.0,
    }


def evaluate(
    matcher: Matcher, pairs: Iterable[Pair], method: str, dataset: str = ""
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-pair rows (:data:`ROW_COLUMNS`) and a summary that records the matcher's settings and OpenCV."""
    rows = pd.DataFrame(
        [
            {"pair_id": pair.pair_id, "method": method, "dataset": dataset or pair.dataset}
            | evaluate_pair(matcher, pair)
            for pair in pairs
        ],
        columns=ROW_COLUMNS,
    )
    return rows, summarise(rows) | matcher.settings() | {"opencv": OPENCV_VERSION}


@dataclass(frozen=True)
class BootstrapCI:
    """A statistic's difference between two methods and its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float


def paired_bootstrap_ci(
    a: np.ndarray,
    b: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapCI:
    """Percentile CI of ``statistic(a) − statistic(b)``, resampling the same pair indices for both methods."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError("paired bootstrap needs per-pair values of both methods over the same pairs")
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, len(a), size=(n_boot, len(a)))
    deltas = np.array([statistic(a[index]) - statistic(b[index]) for index in samples])
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return BootstrapCI(statistic(a) - statistic(b), float(low), float(high))


def compare_map(
    rows: pd.DataFrame,
    method_a: str,
    method_b: str,
    threshold: int = 10,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapCI:
    """Paired bootstrap CI of ``mAP@threshold(method_a) − mAP@threshold(method_b)`` over their common pairs."""
    errors = rows.pivot_table(index=["dataset", "pair_id"], columns="method", values="err").dropna()
    return paired_bootstrap_ci(
        errors[method_a].to_numpy(),
        errors[method_b].to_numpy(),
        lambda e: mean_average_precision(e, threshold),
        n_boot,
        seed,
        level,
    )


def evaluate_correspondence(
    method_name: str,
    dataset: str,
    *,
    split: str = "test",
    weights: Path | None = None,
    max_pairs: int | None = None,
    ransac_threshold: float = DEFAULT_RANSAC_THRESHOLD,
    protocol: str = "ransac",
    seed: int = 0,
    device: str = "cpu",
    folder: Path | None = None,
    out: Path | None = None,
    raw: Path | None = None,
    mirror: Path | None = None,
    options: PrepareOptions | None = None,
) -> dict[str, Any]:
    """Evaluate a registered correspondence method on a split, preparing the dataset if needed.

    ``weights`` is the ``model.pt`` of a learned method; ``protocol`` (``ransac``/``weighted8``) applies to
    learned methods only. ``out`` receives ``per_pair.parquet``. Returns a JSON-ready summary with ``map5``,
    ``map10``, ``map20``, median errors, inlier precision/recall/F1, failure and degeneracy counts, and the
    settings the numbers depend on (τ_R, protocol, OpenCV version).
    """
    settings: dict[str, Any] = {"threshold": ransac_threshold, "seed": seed}
    if MATCHERS.get(method_name).trainable:
        settings["protocol"] = protocol
    matcher = load_matcher(method_name, weights, device, **settings)
    pairs = load_pairs(dataset, split, folder=folder, max_pairs=max_pairs, raw=raw, mirror=mirror, options=options)
    rows, summary = evaluate(matcher, pairs, method_name, dataset)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        rows.to_parquet(Path(out) / PER_PAIR, index=False)
    return {"method": method_name, "dataset": dataset, "split": split, **summary}
