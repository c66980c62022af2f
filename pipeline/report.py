"""The per-profile report: paper vs measured tables, paired bootstrap comparisons, figures and plot data.

The inputs are what the evaluate stage wrote for a profile: one summary JSON per cell under
``reports/metrics/<profile>/<task>/`` and, per cell, the per-image rows and example outputs under
``runs/<profile>/eval/<task>/<method>-<setting>/``. Everything goes to ``reports/<profile>/``. Each file is
written atomically, and the Markdown and CSV bytes depend only on the inputs.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pipeline import paths
from pipeline.cells import EXAMPLES, PER_IMAGE
from pipeline.config import Params
from pipeline.correspondence.report import section as correspondence_section
from pipeline.data.images import atomic_write_bytes, read_image
from pipeline.evaluate import ROW_COLUMNS, SuperResolutionTask
from pipeline.markdown import MISSING, markdown_table, number

PAPER_TABLES = paths.REPORTS / "paper_tables.yaml"

# ---- how the paper's names map to n3bench's -------------------------------------------------------------------
#: the paper's setting key → n3bench task, and the label and CSV column of that task's setting
SETTING_TASK = {"sigma": "denoise", "scale": "sr", "real_sigma": "realnoise"}
SETTING_LABEL = {"denoise": "σ={}", "sr": "×{}", "realnoise": "σ={}"}  # real noise: σ=0 is "estimated per image"
SETTING_COLUMN = {"denoise": "sigma", "sr": "scale", "realnoise": "sigma"}
CURVE_COLUMNS = {"denoise": "sigma", "sr": "scale"}  # tasks with a PSNR-vs-setting plot
#: the paper's method names → n3bench methods, per task; a name not listed has no n3bench implementation
PAPER_METHODS = {
    "denoise": {
        "N3Net": "n3net",
        "N3Net-official-weights": "n3net",
        "DnCNN": "dncnn-s",  # the N3Net table's DnCNN: one model per σ (it has σ=70, which DnCNN-B lacks)
        "DnCNN-S": "dncnn-s",
        "DnCNN-B": "dncnn-b",
        "BM3D": "bm3d",
    },
    "sr": {"N3Net": "n3net-sr", "VDSR": "vdsr", "Bicubic": "bicubic"},
    "realnoise": {"noisy": "noisy"},
}
#: the paper's dataset names → n3bench test sets, per task
PAPER_DATASETS = {
    "denoise": {
        "Set12": "set12",
        "BSD68": "bsd68",
        "val68": "val68",
        "bsd68_png": "bsd68",
        "Urban100": "urban100_gray",
    },
    "sr": {"Set5": "set5", "Set14": "set14", "B100": "b100", "BSD100": "b100", "Urban100": "urban100"},
    "realnoise": {"CC15": "cc15"},
}
#: tables whose protocol uses another copy of a dataset: N3Net's BSD68 is the BSDS500 val68 JPGs through
#: Pillow's gray matrix, not DnCNN's PNGs
TABLE_DATASETS = {"n3net_gaussian_denoising": {"BSD68": "val68"}}
#: metric name in the paper tables → (key in a paper row, column of the measured results, decimals)
METRICS = {"PSNR": ("value", "psnr", 2), "SSIM": ("ssim", "ssim", 4)}

# ---- comparisons and display order ---------------------------------------------------------------------------
#: the floor every method of a task is compared with
BASELINES = {"denoise": "noisy", "sr": "bicubic", "realnoise": "noisy"}
#: comparisons the report shows besides those with the baseline
FOCUS = {"denoise": {("n3net", "dncnn-s")}, "sr": {("n3net-sr", "vdsr")}, "realnoise": {("n3net-pg", "dncnn-pg")}}
#: display order; other (user) methods come after these, the baseline last
METHOD_ORDER = ("n3net", "n3net-sr", "n3net-pg", "dncnn-s", "dncnn-b", "dncnn-pg", "vdsr", "bm3d")

RESULT_COLUMNS = ["task", "method", "setting", "dataset", "psnr", "ssim", "n_images", "seconds", "device", "profile"]
PAIRED_COLUMNS = ["task", "dataset", "setting", "method_a", "method_b", "n_images", "mean_diff", "ci_low",
                  "ci_high", "confidence", "resamples", "seed"]
SMOKE_BANNER = (
    "> **⚠ Smoke profile: these numbers are NOT comparable with the paper.** They come from the smoke "
    "profile's tiny sample images and tiny models trained for seconds on a CPU; they only show that the "
    "pipeline runs end to end. Run the `pretrained` or `paper` profile for numbers to compare."
)


def method_key(method: str) -> tuple[int, int, str]:
    """Sort key: N3Net first, then the known baselines, user methods, and the task's floor last."""
    if method in BASELINES.values():
        return (2, 0, method)
    if method in METHOD_ORDER:
        return (0, METHOD_ORDER.index(method), method)
    return (1, 0, method)


# ---- inputs --------------------------------------------------------------------------------------------------
def load_results(profile: str, root: Path = Path(".")) -> pd.DataFrame:
    """One row per evaluated (task, method, setting, dataset) from the summary JSONs; skipped cells left out."""
    rows = []
    for path in sorted((root / paths.REPORTS / "metrics" / profile).glob("*/*.json")):
        task = path.parent.name
        summary = json.loads(path.read_text())
        if task not in SETTING_COLUMN or summary.get("skipped"):
            continue
        method, setting = path.stem.rsplit("-", 1)
        for dataset, scores in sorted(summary.items()):
            if isinstance(scores, dict):
                rows.append({"task": task, "method": method, "setting": int(setting), "dataset": dataset,
                             **{key: scores.get(key) for key in ("psnr", "ssim", "n_images", "seconds")},
                             "device": summary.get("device"), "profile": profile})
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return results.sort_values(["task", "dataset", "setting", "method"], ignore_index=True)


def load_per_image(profile: str, results: pd.DataFrame, root: Path = Path(".")) -> pd.DataFrame:
    """The per-image rows of every evaluated cell that has them, method names as in the cell's file name."""
    frames = []
    for task, method, setting in _cells(results):
        path = root / paths.eval_dir(profile, task, method, setting) / PER_IMAGE
        if path.exists():
            frames.append(pd.read_parquet(path).assign(task=task, method=method, setting=setting))
    if not frames:
        return pd.DataFrame(columns=ROW_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def _cells(results: pd.DataFrame) -> list[tuple[str, str, int]]:
    unique = results[["task", "method", "setting"]].drop_duplicates()
    return [(task, method, int(setting)) for task, method, setting in unique.itertuples(index=False)]


def _with_seconds(results: pd.DataFrame, per_image: pd.DataFrame) -> pd.DataFrame:
    """Fill seconds per image that a summary lacks from the per-image rows."""
    if per_image.empty:
        return results
    keys = ["task", "method", "setting", "dataset"]
    means = per_image.groupby(keys)["seconds"].mean().round(6).rename("mean_seconds").reset_index()
    merged = results.merge(means, on=keys, how="left")
    merged["seconds"] = merged["seconds"].astype(float).fillna(merged["mean_seconds"])
    return merged[RESULT_COLUMNS]


# ---- statistics ----------------------------------------------------------------------------------------------
def paired_bootstrap(
    diffs: np.ndarray, resamples: int = 10000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of paired differences and its percentile bootstrap confidence interval (low, high)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(diffs.mean()), float(low), float(high)


def paired_comparisons(
    per_image: pd.DataFrame, resamples: int = 10000, confidence: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Every pair of methods scored on common images of a (task, dataset, setting): mean PSNR(A) − PSNR(B).

    A is the method that comes first in :func:`method_key` order, so the baseline is always B.
    """
    rows = []
    for (task, dataset, setting), group in per_image.groupby(["task", "dataset", "setting"], sort=True):
        table = group.pivot(index="image", columns="method", values="psnr")
        for first, second in combinations(sorted(table.columns, key=method_key), 2):
            both = table[[first, second]].dropna()
            if both.empty:
                continue
            mean, low, high = paired_bootstrap((both[first] - both[second]).to_numpy(), resamples, confidence, seed)
            rows.append([task, dataset, int(setting), first, second, len(both), round(mean, 4), round(low, 4),
                         round(high, 4), confidence, resamples, seed])
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


# ---- paper tables --------------------------------------------------------------------------------------------
@dataclass
class TableRow:
    """One (method, dataset) row of a paper table: paper values by setting and the n3bench names, if any.

    ``method`` is None for a measured method that the paper table lacks.
    """

    method: str | None
    dataset: str
    ours: str | None
    our_dataset: str | None
    paper: dict[int, tuple[float | None, bool]] = field(default_factory=dict)

    def label(self) -> tuple[str, str]:
        method = f"`{self.ours}`" if self.method is None else self.method
        if self.method is not None and self.ours:
            method += f" (`{self.ours}`)"
        dataset = f"{self.dataset} (`{self.our_dataset}`)" if self.our_dataset else self.dataset
        return method, dataset


def _row_task(row: dict[str, Any]) -> str | None:
    keys = list(row.get("setting", {}))
    return SETTING_TASK.get(keys[0]) if len(keys) == 1 else None


def _our_dataset(table_id: str, task: str, dataset: str) -> str | None:
    return TABLE_DATASETS.get(table_id, {}).get(dataset) or PAPER_DATASETS[task].get(dataset)


def _paper_rows(table: dict[str, Any], task: str, value_key: str) -> list[TableRow]:
    rows: dict[tuple[str, str], TableRow] = {}
    for entry in table.get("rows", []):
        if _row_task(entry) != task:
            continue
        name, dataset = entry["method"], entry["dataset"]
        row = rows.setdefault((name, dataset), TableRow(name, dataset, PAPER_METHODS[task].get(name),
                                                        _our_dataset(table["id"], task, dataset)))
        setting = int(next(iter(entry["setting"].values())))
        row.paper[setting] = (entry.get(value_key), entry.get("verified", True) is not False)
    return list(rows.values())


def _extra_rows(rows: list[TableRow], task: str, settings: list[int], results: pd.DataFrame) -> list[TableRow]:
    """Rows for measured methods that the paper table lacks, on the table's datasets and settings."""
    extra = []
    datasets = {row.our_dataset: row.dataset for row in rows if row.our_dataset}
    for ours, dataset in datasets.items():
        listed = {row.ours for row in rows if row.our_dataset == ours}
        found = results[(results.task == task) & (results.dataset == ours) & results.setting.isin(settings)]
        for method in sorted(set(found.method) - listed, key=method_key):
            extra.append(TableRow(None, dataset, method, ours))
    return extra


def _measured(results: pd.DataFrame, task: str, column: str) -> dict[tuple[str, str, int], float]:
    found = results[(results.task == task) & results[column].notna()]
    return {(m, d, int(s)): float(v) for m, d, s, v in zip(found.method, found.dataset, found.setting, found[column],
                                                            strict=True)}


def _places(paper: float | None, decimals: int) -> int:
    """``decimals``, or more where the paper value has more."""
    given = 0 if paper is None else len(f"{paper:.10f}".rstrip("0").split(".")[1])
    return max(decimals, given)


def _cells_of(row: TableRow, setting: int, measured: dict, decimals: int) -> list[str]:
    """Paper, measured and Δ for one setting, all to the paper value's precision."""
    paper, verified = row.paper.get(setting, (None, True))
    places = _places(paper, decimals)
    value = measured.get((row.ours, row.our_dataset, setting))
    paper_text = MISSING if paper is None else f"{paper:.{places}f}" + ("" if verified else "†")
    value_text = MISSING if value is None else f"{value:.{places}f}"
    delta = MISSING if paper is None or value is None else f"{value - paper:+.{places}f}"
    return [paper_text, value_text, delta]


def paper_table_markdown(table: dict[str, Any], task: str, metric: str, results: pd.DataFrame) -> str | None:
    """The Markdown of one paper table for one task and metric; None when it has no row to show."""
    value_key, column, decimals = METRICS[metric]
    rows = _paper_rows(table, task, value_key)
    settings = sorted({setting for row in rows for setting in row.paper})
    measured = _measured(results, task, column)
    rows += _extra_rows(rows, task, settings, results)
    lines = []
    for row in rows:
        cells = [cell for setting in settings for cell in _cells_of(row, setting, measured, decimals)]
        if any(cell != MISSING for cell in cells):
            lines.append([*row.label(), *cells])
    if not lines:
        return None
    measured_here = str(table.get("source_paper", "")).startswith("none")
    reference = table.get("column") or ("Reference" if measured_here else "Paper")
    names = [SETTING_LABEL[task].format(setting) for setting in settings]
    header = ["Method", "Dataset", *[f"{name} {kind}" for name in names for kind in (reference, "Measured", "Δ")]]
    unit = " (dB)" if metric == "PSNR" else ""
    return "\n".join([
        f"### {table['id']} · {task} · {metric}{unit}", "",
        f"*{table.get('caption', '').strip()}* Source: {table.get('source_paper', 'unknown')}.", "",
        *markdown_table(header, lines),
    ])


def paper_tables_markdown(tables: Iterable[dict[str, Any]], results: pd.DataFrame,
                          tasks: Iterable[str] = ("denoise", "sr")) -> list[str]:
    """The Markdown of every paper table of ``tasks``, one block per (table, task, metric)."""
    blocks = []
    for table in tables:
        metrics = table.get("metric", [])
        for task in tasks:
            for metric in [metrics] if isinstance(metrics, str) else metrics:
                block = metric in METRICS and paper_table_markdown(table, task, metric, results)
                if block:
                    blocks.append(block)
    return blocks


# ---- real noise -----------------------------------------------------------------------------------------------
#: the DND table of the paper; its scores come only from the benchmark website
DND_TABLE = "n3net_real_denoising_dnd"
DND_MEASURED = "submit to the website"
REALNOISE_METHODS = (
    "Measured rows, all at setting 0 (each method estimates the noise itself): `noisy` is the input; `bm3d` is "
    "CBM3D with σ from a white-noise wavelet estimate per image; `dncnn-b` is the official gray DnCNN-B run on "
    "each RGB channel; `n3net-pg`/`dncnn-pg` are the gray Poisson-Gaussian networks run on each RGB channel with "
    "that channel's (a, b) fitted by `pipeline.protocols.pgnoise.estimate_noise_levels` (docs/realnoise.md)."
)


def dnd_markdown(tables: Iterable[dict[str, Any]]) -> list[str]:
    """The paper's DND table: its values (Paper; — where unknown) beside 'submit to the website'."""
    table = next((table for table in tables if table.get("id") == DND_TABLE), None)
    if table is None:
        return []
    values: dict[tuple[str, str], dict[str, str]] = {}
    for row in table.get("rows", []):
        value = row.get("value")
        text = MISSING if value is None else f"{value}" + ("" if row.get("verified", True) is not False else "†")
        values.setdefault((row["method"], row["setting"]["space"]), {})[row["metric"]] = text
    lines = [[method, space, found.get("PSNR", MISSING), found.get("SSIM", MISSING), DND_MEASURED]
             for (method, space), found in values.items()]
    return [f"### {DND_TABLE} · DND", "", f"*{table.get('caption', '').strip()}* Source: "
            f"{table.get('source_paper', 'unknown')}. {table.get('notes', '').strip()} n3bench writes the submission "
            "bundle (`pipeline/realnoise/dnd.py`); only the benchmark website scores it.", "",
            *markdown_table(["Method", "Space", "PSNR Paper", "SSIM Paper", "Measured"], lines)]


def realnoise_markdown(tables: list[dict[str, Any]], results: pd.DataFrame) -> list[str]:
    """The real-noise section: DND (paper only), CC15 (published beside measured), SIDD."""
    sidd = results[(results.task == "realnoise") & (results.dataset == "sidd")]
    return [
        "## Real noise", "", *dnd_markdown(tables),
        *paper_tables_markdown(tables, results, ("realnoise",)), REALNOISE_METHODS, "",
        "### SIDD validation", "",
        "Computed here, see Measured below." if len(sidd) else
        "Not computed: it needs the SIDD download (`n3bench datasets list` says where to put the files); the "
        "reader is `pipeline/realnoise/sidd.py`.", "",
    ]


# ---- other Markdown sections ---------------------------------------------------------------------------------
def measured_markdown(results: pd.DataFrame) -> list[str]:
    """Everything measured, one table per task."""
    lines = []
    for task, group in results.groupby("task", sort=True):
        lines += [f"### Measured · {task}", ""]
        ordered = sorted(group.itertuples(), key=lambda r: (r.dataset, r.setting, method_key(r.method)))
        rows = [[f"`{r.method}`", r.dataset, SETTING_LABEL[task].format(r.setting), number(r.psnr, ".2f"),
                 number(r.ssim, ".4f"), number(r.n_images, ".0f"), number(r.seconds, ".3f")]
                for r in ordered]
        lines += markdown_table(["Method", "Dataset", "Setting", "PSNR (dB)", "SSIM", "Images", "s/image"], rows)
    return lines or ["Nothing was measured in this profile yet.", ""]


def paired_markdown(paired: pd.DataFrame, confidence: float) -> list[str]:
    """The headline comparisons: every method vs the task's floor, and N3Net vs its closest baseline."""
    shown = paired[[row.method_b == BASELINES[row.task] or (row.method_a, row.method_b) in FOCUS[row.task]
                    for row in paired.itertuples()]] if len(paired) else paired
    lines = []
    percent = f"{confidence:.0%}"
    for task, group in shown.groupby("task", sort=True):
        lines += [f"### Paired · {task}", ""]
        rows = [[r.dataset, SETTING_LABEL[task].format(r.setting), f"`{r.method_a}`", f"`{r.method_b}`",
                 str(r.n_images), f"{r.mean_diff:+.2f}", f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]"]
                for r in group.itertuples()]
        lines += markdown_table(["Dataset", "Setting", "A", "B", "Images", "Mean ΔPSNR A − B (dB)",
                                  f"{percent} CI"], rows)
    return lines or ["No two methods were scored on the same images.", ""]


# ---- figures and plot data -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Panel:
    """One image of an example grid and its caption."""

    title: str
    image: np.ndarray


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def _first_file(candidates: Iterable[Path]) -> Path | None:
    return next((path for path in candidates if path.is_file()), None)


def _caption(title: str, psnr: pd.Series, method: str) -> str:
    return f"{title}\n{psnr[method]:.2f} dB" if method in psnr.index else title


def example_panels(profile: str, task: str, dataset: str, setting: int, per_image: pd.DataFrame,
                   root: Path = Path(".")) -> tuple[str, list[Panel]]:
    """The first test image of ``dataset``: clean, degraded input and every method's output, where written
    (super-resolution: LR, bicubic input, the methods, HR).

    Every cell writes ``<dataset>__<image>.png`` (its output) and ``__degraded.png`` / ``__reference.png``
    next to it. The baseline's output is its input, so it is shown once, as the input with its PSNR.
    """
    rows = per_image[(per_image.task == task) & (per_image.dataset == dataset) & (per_image.setting == setting)]
    image = str(rows.image.iloc[0])
    name = f"{dataset}__{image}"
    psnr = rows[rows.image == image].set_index("method").psnr
    folders = {method: root / paths.eval_dir(profile, task, method, setting) / EXAMPLES
               for method in sorted(rows.method.unique(), key=method_key)}
    baseline = BASELINES[task]
    panels = []
    for title, suffix in (("clean", "__reference"), (_caption(f"input ({baseline})", psnr, baseline), "__degraded")):
        found = _first_file(folder / f"{name}{suffix}.png" for folder in folders.values())
        panels += [Panel(title, read_image(found))] if found else []
    for method, folder in folders.items():
        if method != baseline and (folder / f"{name}.png").is_file():
            panels.append(Panel(_caption(method, psnr, method), read_image(folder / f"{name}.png")))
    if task == "sr" and panels and panels[0].title == "clean":
        panels = [low_resolution_panel(panels[0].image, setting), *panels[1:], Panel("HR", panels[0].image)]
    return image, panels


def low_resolution_panel(high: np.ndarray, scale: int) -> Panel:
    """The LR input of an SR example (MATLAB bicubic ÷ scale, 8-bit), shown with pixel replication at HR size."""
    low = np.clip(np.round(SuperResolutionTask.low_resolution(high / 255.0, scale) * 255.0), 0, 255).astype(np.uint8)
    return Panel(f"LR (×{scale}, pixels replicated)", np.repeat(np.repeat(low, scale, axis=0), scale, axis=1))


def crop_box(image: np.ndarray) -> tuple[int, int, int]:
    """(top, left, size) of the most textured square a quarter of the shorter side wide."""
    gray = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
    size = max(1, min(gray.shape) // 4)
    step = max(1, size // 2)
    windows = ((gray[top : top + size, left : left + size].std(), -top, -left)
               for top in range(0, gray.shape[0] - size + 1, step)
               for left in range(0, gray.shape[1] - size + 1, step))
    _, top, left = max(windows)
    return -top, -left, size


def _show(axes: Any, image: np.ndarray) -> None:
    axes.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes.set_axis_off()


def example_figure(title: str, panels: list[Panel]) -> bytes:
    """PNG: each panel in full with the crop outlined (top row) and the crop enlarged (bottom row)."""
    top, left, size = crop_box(panels[0].image)
    height, width = panels[0].image.shape[:2]
    figure = Figure(figsize=(2.2 * len(panels), 2.2 * (1.0 + height / width) + 0.9), layout="constrained")
    axes = figure.subplots(2, len(panels), squeeze=False)
    for column, panel in enumerate(panels):
        _show(axes[0, column], panel.image)
        axes[0, column].add_patch(Rectangle((left - 0.5, top - 0.5), size, size, fill=False, edgecolor="red"))
        axes[0, column].set_title(panel.title, fontsize=8)
        _show(axes[1, column], panel.image[top : top + size, left : left + size])
    figure.suptitle(title, fontsize=9)
    return _png(figure)


def psnr_curves(results: pd.DataFrame, task: str) -> pd.DataFrame:
    """Plot data: method, dataset, setting (named sigma or scale), psnr."""
    column = SETTING_COLUMN[task]
    found = results[(results.task == task) & results.psnr.notna()]
    curves = found[["method", "dataset", "setting", "psnr"]].rename(columns={"setting": column})
    return curves.sort_values(["dataset", "method", column], ignore_index=True)


def curve_figure(task: str, dataset: str, curves: pd.DataFrame) -> bytes:
    """PNG: PSNR against the task's setting on one dataset, one line per method."""
    column = SETTING_COLUMN[task]
    figure = Figure(figsize=(5.0, 3.6), layout="constrained")
    axes = figure.subplots()
    for method in sorted(curves.method.unique(), key=method_key):
        line = curves[curves.method == method].sort_values(column)
        axes.plot(line[column], line.psnr, marker="o", label=method)
    axes.set_xticks(sorted(curves[column].unique()))
    axes.set(xlabel="σ (0–255)" if task == "denoise" else "scale", ylabel="PSNR (dB)", title=f"{task} · {dataset}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _png(figure)


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, lineterminator="\n").encode()


def training_curves(profile: str, root: Path) -> Iterator[tuple[str, bytes]]:
    """The dvclive histories of every trained cell, as ``plots/training/<task>_<cell>_<metric>.tsv``."""
    fit = root / paths.RUNS / profile / "fit"
    for history in sorted(fit.glob("*/*/live/plots/metrics/*.tsv")):
        cell_dir = history.parents[3]
        yield f"plots/training/{cell_dir.parent.name}_{cell_dir.name}_{history.stem}.tsv", history.read_bytes()


def figures(profile: str, results: pd.DataFrame, per_image: pd.DataFrame, root: Path) -> Iterator[tuple[str, bytes]]:
    """(relative path, bytes) of every plot-data file and figure."""
    for task, column in CURVE_COLUMNS.items():
        curves = psnr_curves(results, task)
        yield f"plots/psnr_vs_{column}.csv", _csv(curves)
        for dataset, group in curves.groupby("dataset", sort=True):
            yield f"figures/psnr_vs_{column}_{dataset}.png", curve_figure(task, str(dataset), group)
    groups = per_image.groupby(["task", "dataset", "setting"], sort=True)
    for (task, dataset, setting), _ in groups:
        image, panels = example_panels(profile, task, dataset, int(setting), per_image, root)
        if panels:
            label = SETTING_LABEL[task].format(setting)
            yield (f"figures/examples_{task}_{dataset}_{SETTING_COLUMN[task]}{setting}.png",
                   example_figure(f"{task} · {dataset} · {label} · {image}", panels))


# ---- the report ----------------------------------------------------------------------------------------------
def _header(profile: str, results: pd.DataFrame) -> list[str]:
    lines = [f"# n3bench report · profile `{profile}`", ""]
    if profile == "smoke":
        lines += [SMOKE_BANNER, ""]
    devices = ", ".join(sorted(str(device) for device in results.device.dropna().unique())) or MISSING
    sizes = results.groupby("dataset").n_images.max()
    testsets = ", ".join(f"{dataset} ({int(n)} images)" for dataset, n in sizes.items()) or MISSING
    cells = len(_cells(results))
    return [
        *lines,
        f"Generated from the {cells} evaluated cells of `reports/metrics/{profile}/` and the per-image rows of "
        f"`runs/{profile}/eval/`. Device: {devices}. Test sets: {testsets}.", "",
        "Files: `results.csv` (every measured number), `paired.csv` (every paired comparison), `plots/` "
        "(plot data), `figures/`.", "",
    ]


def report_markdown(profile: str, results: pd.DataFrame, paired: pd.DataFrame, tables: list[dict[str, Any]],
                    figure_names: list[str], confidence: float, resamples: int, seed: int,
                    sections: Sequence[str] = ()) -> str:
    """The whole README.md; ``sections`` (Markdown lines: other tasks' sections) go before the figures."""
    lines = _header(profile, results)
    lines += ["## Paper vs measured", "",
              "Δ = measured − paper. — : not run here, or no published value. † : the paper value comes from a "
              "secondary source and is not yet checked against the paper. Paper numbers appear only in the "
              "columns labelled Paper (Reference: a measurement of the official weights, not a paper number); "
              "they come from `reports/paper_tables.yaml`, with their sources. Rows with neither a "
              "paper value nor a measurement are left out.", ""]
    lines += paper_tables_markdown(tables, results)
    lines += realnoise_markdown(tables, results)
    lines += ["## Paired comparisons", "",
              f"Mean per-image PSNR difference A − B over the images both methods were scored on, with a "
              f"{confidence:.0%} percentile bootstrap interval ({resamples} resamples, seed {seed}). Shown: "
              "each method against the task's floor, and N3Net against its closest baseline; `paired.csv` "
              "holds every pair.", ""]
    lines += paired_markdown(paired, confidence)
    lines += ["## Measured", "", *measured_markdown(results)]
    lines += list(sections)
    lines += ["## Figures", "", *([f"![{name}]({name})" for name in figure_names] or ["No figures yet."]), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _prune(out: Path, keep: set[str]) -> None:
    """Delete figures and plot data an earlier run wrote that this run did not."""
    for folder in ("figures", "plots"):
        for path in sorted((out / folder).glob("*")):
            if path.is_file() and path.relative_to(out).as_posix() not in keep:
                path.unlink()


def build_report(profile: str, root: Path = Path("."), *, paper_tables: Path | None = None,
                 resamples: int = 10000, confidence: float = 0.95, seed: int = 0) -> Path:
    """Write ``reports/<profile>/`` under ``root``: README.md, results.csv, paired.csv, plots/, figures/.

    ``paper_tables`` defaults to ``reports/paper_tables.yaml`` under ``root``. Returns the folder.
    """
    out = root / paths.report_dir(profile)
    results = load_results(profile, root)
    per_image = load_per_image(profile, results, root)
    results = _with_seconds(results, per_image)
    paired = paired_comparisons(per_image, resamples, confidence, seed)
    tables = yaml.safe_load((paper_tables or root / PAPER_TABLES).read_text())["tables"]
    files = dict(figures(profile, results, per_image, root))
    files.update(training_curves(profile, root))
    correspondence, correspondence_files = correspondence_section(profile, root, resamples, confidence, seed,
                                                                  paper_tables)
    files.update(correspondence_files)
    names = sorted(name for name in files if name.endswith(".png"))
    files["results.csv"] = _csv(results)
    files["paired.csv"] = _csv(paired)
    files["README.md"] = report_markdown(profile, results, paired, tables, names, confidence, resamples, seed,
                                         correspondence).encode()
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
    _prune(out, set(files))
    return out


def build_report_from_params(params: Params, profile: str | None = None) -> Path:
    """:func:`build_report` for ``profile`` (default: the active one) with the bootstrap settings of params."""
    bootstrap = params.raw.get("denoise", {}).get("bootstrap", {})
    return build_report(profile or params.profile, resamples=bootstrap.get("resamples", 10000),
                        confidence=bootstrap.get("confidence", 0.95), seed=params.raw.get("seed", 0))
