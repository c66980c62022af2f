"""Pose-error evaluation of correspondence methods: per-pair rows, CNet's mAP, inlier precision/recall.

mAP (spec §3.3) is CNet's accumulated-accuracy AUC, not detection mAP: with ``e = max(err_R, err_t)`` per pair
(failures count as 180°/90°), ``acc(θ)`` is the fraction of pairs with ``e < θ`` from a histogram with edges
0, 5, …, 30 (the last bin closed), and ``mAP@θ = mean(acc(5), acc(10), …, acc(θ))``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.correspondence.features import OPENCV_VERSION
from pipeline.correspondence.geometry import pose_errors
from pipeline.correspondence.methods import Matcher
from pipeline.correspondence.tables import INLIER, OUTLIER, Pair, degeneracy, drop_non_finite

BIN_WIDTH_DEG = 5
MAX_THRESHOLD_DEG = 30
REPORTED_THRESHOLDS = (5, 10, 20)


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
    """Precision, recall and F1 of a predicted inlier mask over the matches with known labels (0 if empty)."""
    known = (labels == INLIER) | (labels == OUTLIER)
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


def summarise(rows: pd.DataFrame, thresholds: Iterable[int] = REPORTED_THRESHOLDS) -> dict[str, float]:
    """mAPs over all pairs (failures and degenerate pairs included), median errors, mean inlier scores, counts."""
    errors = rows["err"].to_numpy()
    summary = {f"map{threshold}": mean_average_precision(errors, threshold) for threshold in thresholds}
    summary |= {f"median_{name}": float(rows[name].median()) for name in ("err_R", "err_t")}
    summary |= {name: float(rows[name].mean()) for name in ("precision", "recall", "f1")}
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
    rows: pd.DataFrame, method_a: str, method_b: str, threshold: int = 10, n_boot: int = 2000, seed: int = 0
) -> BootstrapCI:
    """Paired bootstrap CI of ``mAP@threshold(method_a) − mAP@threshold(method_b)`` over their common pairs."""
    errors = rows.pivot_table(index=["dataset", "pair_id"], columns="method", values="err").dropna()
    return paired_bootstrap_ci(
        errors[method_a].to_numpy(),
        errors[method_b].to_numpy(),
        lambda e: mean_average_precision(e, threshold),
        n_boot,
        seed,
    )
