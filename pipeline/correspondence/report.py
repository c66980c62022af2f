"""Report helpers for correspondences: the paper's table (Paper | Measured | Δ) and a figure of a pair's matches.

The paper's values come from the ``n3net_correspondence`` table of ``reports/paper_tables.yaml`` (all still
unverified nulls, shown as "—"). Measured results are the summaries of
:func:`~pipeline.correspondence.evaluate.evaluate_correspondence`, each with a ``train`` key naming the
training dataset (default: the test dataset); rows without a paper counterpart (synthetic data, RANSAC) are
listed after the paper's rows.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from pipeline import paths
from pipeline.cells import EXAMPLES
from pipeline.correspondence.cells import PREDICTED
from pipeline.correspondence.data import view_images
from pipeline.correspondence.evaluate import PER_PAIR, REPORTED_THRESHOLDS, ROW_COLUMNS, compare_map
from pipeline.correspondence.tables import INLIER, Pair, read_pairs
from pipeline.markdown import MISSING, markdown_table, number

TABLE_ID = "n3net_correspondence"
PAPER_TABLES = paths.REPORTS / "paper_tables.yaml"
#: the paper's method names → n3bench's correspondence methods
PAPER_METHODS = {"CNet": "cnet", "N3Net": "n3net-cnet"}

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
        "### Correspondence · pose mAP · paper vs measured",
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


# ---- the correspondence section of the profile report (pipeline.report) -----------------------------------------
TASK = "correspondence"
#: the comparisons shown: N³Net-CNet against CNet, and each network against RANSAC alone
COMPARISONS = (("n3net-cnet", "cnet"), ("cnet", "ransac"), ("n3net-cnet", "ransac"))
#: the cell whose example pair becomes the match figure: the first method and test set of these that was run
FIGURE_METHODS = ("n3net-cnet", "cnet", "ransac")
FIGURE_DATASETS = ("stereo_motorcycle",)  # real photographs first; else the cell's first test set
FIGURE = "figures/correspondence_matches.png"
FIGURE_MATCHES = 150  # matches drawn (a seeded sample), so that single lines stay visible
RESULT_COLUMNS = ["method", "train", "dataset", "n_pairs", "map5", "map10", "map20", "precision", "recall", "f1",
                  "median_err_R", "median_err_t", "n_failed", "n_degenerate", "nan_matches", "seconds_per_pair",
                  "protocol", "ransac_threshold", "opencv", "device"]
PAIRED_COLUMNS = ["train", "dataset", "method_a", "method_b", "n_pairs", "threshold", "mean_diff", "ci_low",
                  "ci_high", "confidence", "resamples", "seed"]


def load_results(profile: str, root: Path = Path(".")) -> pd.DataFrame:
    """One row per evaluated (method, training set, test set) from the cells' metrics JSONs; skips left out."""
    rows = []
    for path in sorted((root / paths.REPORTS / "metrics" / profile / TASK).glob("*.json")):
        summary = json.loads(path.read_text())
        if summary.get("skipped"):
            continue
        method = path.stem.removesuffix(f"-{summary['train']}")
        for dataset, scores in sorted(summary.items()):
            if isinstance(scores, dict):
                rows.append({**scores, "method": method, "train": summary["train"], "dataset": dataset,
                             "device": summary.get("device")})
    return pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS)


def _cell_dir(profile: str, method: str, train: str, root: Path) -> Path:
    return root / paths.eval_dir(profile, TASK, method, train)


def load_rows(profile: str, results: pd.DataFrame, root: Path = Path(".")) -> pd.DataFrame:
    """The per-pair rows of every evaluated cell."""
    cells = results[["method", "train"]].drop_duplicates().itertuples(index=False)
    frames = [pd.read_parquet(path) for method, train in cells
              if (path := _cell_dir(profile, method, train, root) / PER_PAIR).is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*ROW_COLUMNS, "train"])


def paired(rows: pd.DataFrame, resamples: int, confidence: float, seed: int, threshold: int = 10) -> pd.DataFrame:
    """Paired bootstrap CIs of the mAP@``threshold`` differences in :data:`COMPARISONS`, per train → test."""
    found = []
    for (train, dataset), group in rows.groupby(["train", "dataset"], sort=True):
        if group.pair_id.nunique() < 2:
            continue  # no spread to resample
        for first, second in COMPARISONS:
            if {first, second} <= set(group.method):
                common = group[group.method.isin([first, second])]
                ci = compare_map(common, first, second, threshold, resamples, seed, confidence)
                n_pairs = int(common.groupby("pair_id").method.nunique().eq(2).sum())
                found.append([train, dataset, first, second, n_pairs, threshold, round(ci.estimate, 4),
                              round(ci.low, 4), round(ci.high, 4), confidence, resamples, seed])
    return pd.DataFrame(found, columns=PAIRED_COLUMNS)


def measured_markdown(results: pd.DataFrame) -> list[str]:
    """Every measured cell: mAPs, inlier scores, median errors, and the failed / degenerate pair counts."""
    header = ["Method", "Train → test", "Pairs", "mAP@5°", "mAP@10°", "mAP@20°", "Precision", "Recall", "F1",
              "Median err_R / err_t (°)", "Failed", "Degenerate", "NaN matches", "s/pair"]
    rows = [[f"`{r.method}`", f"{r.train} → {r.dataset}", str(r.n_pairs), number(r.map5), number(r.map10),
             number(r.map20), number(r.precision), number(r.recall), number(r.f1),
             f"{number(r.median_err_R, '.2f')} / {number(r.median_err_t, '.2f')}", str(r.n_failed),
             str(r.n_degenerate), str(r.nan_matches), number(r.seconds_per_pair, ".4f")]
            for r in results.sort_values(["train", "dataset", "method"]).itertuples()]
    return ["### Measured · correspondence", "", *markdown_table(header, rows)]


def paired_markdown(comparisons: pd.DataFrame) -> list[str]:
    lines = ["### Paired · correspondence · mAP@10°", ""]
    if comparisons.empty:
        return [*lines, "No two methods were evaluated on the same pairs.", ""]
    percent = f"{comparisons.confidence.iloc[0]:.0%}"
    rows = [[f"{r.train} → {r.dataset}", f"`{r.method_a}`", f"`{r.method_b}`", str(r.n_pairs),
             f"{r.mean_diff:+.3f}", f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]"] for r in comparisons.itertuples()]
    return [*lines, *markdown_table(["Train → test", "A", "B", "Pairs", "ΔmAP@10° A − B", f"{percent} CI"], rows)]


def _figure_cell(profile: str, results: pd.DataFrame, root: Path) -> tuple[str, str, Path] | None:
    """(method, train, example folder) of the first :data:`FIGURE_METHODS` cell with an example pair."""
    for method in FIGURE_METHODS:
        for row in results[results.method == method].sort_values(["train", "dataset"]).itertuples():
            examples = _cell_dir(profile, method, row.train, root) / EXAMPLES
            found = [examples / name for name in (*FIGURE_DATASETS, row.dataset) if (examples / name).is_dir()]
            if found:
                return method, row.train, found[0]
    return None


def figure_of(profile: str, results: pd.DataFrame, root: Path = Path(".")) -> bytes | None:
    """The match figure: one example pair with the matches coloured by the predicted label (None if no pair)."""
    cell = _figure_cell(profile, results, root)
    if cell is None:
        return None
    method, train, folder = cell
    pair = read_pairs(folder)[0]
    predicted = pd.read_parquet(folder / PREDICTED)["predicted"].to_numpy()
    shown = np.sort(np.random.default_rng(0).permutation(len(pair))[:FIGURE_MATCHES])
    correct = int(np.sum(predicted & (pair.label == INLIER)))
    title = (f"{method} (trained on {train}) · {pair.pair_id}: {correct} of {int(predicted.sum())} predicted inliers "
             f"correct\n{len(shown)} of {len(pair)} matches drawn; predicted inliers green (true), red (false), "
             "orange (unknown); predicted outliers grey")
    return match_figure(pair.subset(shown), predicted[shown], view_images(pair), title)


def section(profile: str, root: Path, resamples: int, confidence: float, seed: int,
            paper_tables: Path | None = None) -> tuple[list[str], dict[str, bytes]]:
    """The report's correspondence section (Markdown lines) and its files (CSV tables, the match figure)."""
    results = load_results(profile, root)
    if results.empty:
        return [], {}
    comparisons = paired(load_rows(profile, results, root), resamples, confidence, seed)
    files = {"correspondence.csv": results.to_csv(index=False, lineterminator="\n").encode(),
             "correspondence_paired.csv": comparisons.to_csv(index=False, lineterminator="\n").encode()}
    figure = figure_of(profile, results, root)
    if figure is not None:
        files[FIGURE] = figure
    thresholds = ", ".join(sorted({f"{value:g}" for value in results.ransac_threshold.dropna()}))
    protocols = ", ".join(sorted(set(results.protocol.dropna()))) or MISSING
    reference = paper_tables or root / PAPER_TABLES
    published = any(value is not None for values in paper_values(reference).values() for value in values.values())
    lines = [
        "## Correspondence classification", "",
        "Pose mAP of CNet and N³Net-CNet against RANSAC alone; the networks are followed by RANSAC on their "
        f"predicted inliers (the paper's test protocol). RANSAC threshold τ_R = {thresholds} (calibrated units); "
        f"the networks' pose protocol: {protocols}. Failed and degenerate pairs count "
        f"as 180°/90° errors. Paper values: table `{TABLE_ID}` of `reports/paper_tables.yaml`"
        + ("." if published else "; all are still null there (the paper's table could not be retrieved), so "
           "the Paper and Δ columns show —.")
        + f" Per-pair rows: `runs/{profile}/eval/correspondence/`; every number: `correspondence.csv`, "
        "`correspondence_paired.csv`.",
        "", *paper_table(results.to_dict("records"), reference).splitlines(), "", *measured_markdown(results),
        f"Paired: mAP@10° difference over the pairs both methods were scored on, {confidence:.0%} percentile "
        f"bootstrap interval ({resamples} resamples, seed {seed}); test sets of a single pair are left out.", "",
        *paired_markdown(comparisons),
    ]
    if figure is not None:
        lines += [f"![correspondence matches]({FIGURE})", ""]
    return lines, files
