"""Report helpers for correspondences: the paper's table (Paper | Measured | Δ) and a figure of a pair's matches.

The paper's values come from the ``n3net_correspondence`` table of ``reports/paper_tables.yaml`` (all still
unverified nulls, shown as "—"). Measured results are the summaries of
:func:`~pipeline.correspondence.evaluate.evaluate_correspondence`, each with a ``train`` key naming the
training dataset (default: the test dataset); rows without a paper counterpart (synthetic data, RANSAC) are
listed after the paper's rows.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from pipeline import paths
from pipeline.correspondence.evaluate import REPORTED_THRESHOLDS
from pipeline.correspondence.tables import INLIER, Pair

TABLE_ID = "n3net_correspondence"
PAPER_TABLES = paths.REPORTS / "paper_tables.yaml"
#: the paper's method names → n3bench's correspondence methods
PAPER_METHODS = {"CNet": "cnet", "N3Net": "n3net_cnet"}
MISSING = "—"

Key = tuple[str, str, str]  # (train dataset, test dataset, n3bench method)


def paper_values(paper_tables: Path = PAPER_TABLES) -> dict[Key, dict[int, float | None]]:
    """``{(train, test, method): {threshold: value or None}}`` of the paper's correspondence table."""
    tables = yaml.safe_load(Path(paper_tables).read_text())["tables"]
    table = next(table for table in tables if table["id"] == TABLE_ID)
    values: dict[Key, dict[int, float | None]] = {}
    for row in table["rows"]:
        setting = row["setting"]
        key = (setting["train"], row["dataset"], PAPER_METHODS.get(row["method"], row["method"]))
        values.setdefault(key, {})[int(setting["threshold_deg"])] = row["value"]
    return values


def _measured(results: Iterable[Mapping[str, Any]]) -> dict[Key, dict[int, float]]:
    return {
        (result.get("train", result["dataset"]), result["dataset"], result["method"]): {
            threshold: float(result[f"map{threshold}"]) for threshold in REPORTED_THRESHOLDS
        }
        for result in results
    }


def _cells(paper: float | None, measured: float | None) -> list[str]:
    delta = measured - paper if paper is not None and measured is not None else None
    return [
        MISSING if paper is None else f"{paper:.3f}",
        MISSING if measured is None else f"{measured:.3f}",
        MISSING if delta is None else f"{delta:+.3f}",
    ]


def paper_table(results: Iterable[Mapping[str, Any]], paper_tables: Path = PAPER_TABLES, note: str = "") -> str:
    """Markdown: one row per (train → test, method) with Paper | Measured | Δ for mAP@5/10/20 (fractions)."""
    paper, measured = paper_values(paper_tables), _measured(results)
    header = ["train → test", "method"] + [
        f"{column} mAP@{threshold}°" for threshold in REPORTED_THRESHOLDS for column in ("Paper", "Measured", "Δ")
    ]
    lines = [
        "# Correspondence classification: pose mAP (paper vs measured)",
        "",
        "mAP@θ = mean of the pose accuracies at 5°, 10°, … θ (spec §3.3), as a fraction. Δ = measured − paper.",
        *([note] if note else []),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for key in [*paper, *sorted(set(measured) - set(paper))]:
        cells = [f"{key[0]} → {key[1]}", key[2]]
        for threshold in REPORTED_THRESHOLDS:
            cells += _cells(paper.get(key, {}).get(threshold), measured.get(key, {}).get(threshold))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pixels(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    return points * K[[0, 1], [0, 1]] + K[[0, 1], [2, 2]]


def match_figure(
    pair: Pair,
    predicted: np.ndarray,
    images: tuple[np.ndarray, np.ndarray] | None = None,
    title: str = "",
) -> bytes:
    """PNG bytes: the two views side by side and every match as a line, coloured by its predicted label.

    Predicted inliers are green when the ground truth agrees and red when not (unknown labels: orange);
    predicted outliers are thin grey lines. Without ``images`` the views are blank frames of their sizes.
    """
    (w1, h1), (w2, h2) = pair.size1, pair.size2
    uv1, uv2 = _pixels(pair.xs[:, :2], pair.K1), _pixels(pair.xs[:, 2:], pair.K2) + np.array([w1, 0])
    segments = np.stack([uv1, uv2], axis=1)
    colours = np.where(pair.label == INLIER, "tab:green", np.where(pair.label < 0, "tab:orange", "tab:red"))
    figure = Figure(figsize=(10, 10 * max(h1, h2) / (w1 + w2) + 0.6), dpi=100, layout="tight")
    axes = figure.add_subplot()
    if images is not None:
        axes.imshow(images[0], extent=(0, w1, h1, 0))
        axes.imshow(images[1], extent=(w1, w1 + w2, h2, 0))
    axes.add_collection(LineCollection(segments[~predicted], colors="0.6", linewidths=0.3, alpha=0.4))
    axes.add_collection(LineCollection(segments[predicted], colors=colours[predicted], linewidths=0.8))
    axes.plot([w1, w1], [0, max(h1, h2)], color="k", linewidth=1)
    axes.set(xlim=(0, w1 + w2), ylim=(max(h1, h2), 0), aspect="equal", xticks=[], yticks=[])
    correct = int(np.sum(predicted & (pair.label == INLIER)))
    axes.set_title(title or f"{pair.pair_id}: {correct}/{int(predicted.sum())} predicted inliers correct")
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()
