"""The ``n3bench`` command line: datasets, single evaluation cells, reports, and restoring your own images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline import paths
from pipeline.config import PARAMS_FILE, SETTINGS, Params, ParamsError, load_params
from pipeline.errors import UserError

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from pipeline.data.catalog import Dataset
    from pipeline.methods import Method
    from pipeline.realnoise.dnd import NoiseLevel

class CleanErrors(click.Group):
    """A command group that prints the user's failures as one line (no traceback) and exits with status 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (UserError, FileNotFoundError) as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=CleanErrors)
@click.version_option(package_name="n3bench")
def main() -> None:
    """n3bench: reproduce Neural Nearest Neighbors Networks (Plötz & Roth, NeurIPS 2018) and its baselines.

    The pipeline itself runs with `dvc repro` (see README.md); these commands inspect datasets, evaluate one
    cell, regenerate reports and apply a method to your own images.
    """


# --- datasets -------------------------------------------------------------------------------------------------
@main.group(cls=CleanErrors)
def datasets() -> None:
    """List, prepare and register datasets."""


def _size(folder: Path) -> str:
    size = sum(path.stat().st_size for path in folder.glob("*") if path.is_file())
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"


def _expected_images(entry: Dataset) -> str:
    """The image count the registry promises (file lists and generated samples), or ``?``."""
    from pipeline.data.catalog import FileList, Generated
    from pipeline.data.sample import RECIPES

    counts = [len(source.entries()) if isinstance(source, FileList) else len(RECIPES[source.recipe][0])
              for source in entry.sources if isinstance(source, FileList | Generated)]
    return str(sum(counts)) if counts else "?"


@datasets.command("list")
def datasets_list() -> None:
    """Every dataset n3bench knows: task, images, size on disk, whether it is prepared, and its source."""
    import pandas as pd

    from pipeline.data.catalog import DATASETS, resolve
    from pipeline.data.prepare import MANIFEST, is_prepared

    params = load_params()
    names = [*DATASETS.names(), *sorted(params.raw.get("folders") or {})]
    rows = []
    for name in names:
        entry = resolve(name, params.raw.get("folders"))
        folder = paths.prepared(name)
        prepared = is_prepared(folder)
        images = str(len(pd.read_parquet(folder / MANIFEST))) if prepared else _expected_images(entry)
        size = _size(folder) if prepared else "—"
        rows.append((name, entry.task, images, size, "yes" if prepared else "no", entry.source_label))
    header = ("name", "task", "images", "size", "prepared", "source")
    widths = [max(len(str(row[column])) for row in [header, *rows]) for column in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(value).ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


@datasets.command("prepare")
@click.argument("name")
def datasets_prepare(name: str) -> None:
    """Download (or read from the mirror), verify and convert dataset NAME into data/prepared/NAME."""
    from pipeline.data.catalog import resolve
    from pipeline.data.download import mirror_root
    from pipeline.data.prepare import prepare

    params = load_params()
    entry = resolve(name, params.raw.get("folders"))
    manifest = prepare(entry, paths.prepared(name), raw=paths.raw(), mirror=mirror_root(params.mirror))
    click.echo(f"{name}: {len(manifest)} images in {paths.prepared(name)}")


@datasets.command("add-folder")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True, help="Dataset name (letters, digits, _ and -).")
@click.option("--gray", "color", flag_value="gray", default=True, help="Gray images: Gaussian denoising (default).")
@click.option("--y", "color", flag_value="y", help="RGB images evaluated on luma: super-resolution.")
@click.option("--rgb", "color", flag_value="rgb", help="RGB images kept in colour: super-resolution.")
def datasets_add_folder(path: Path, name: str, color: str) -> None:
    """Register a folder of images as an evaluation dataset of the active profile (edits params.yaml)."""
    from pipeline.data.catalog import DATASETS
    from pipeline.params_file import add_folder_dataset

    if not name.replace("_", "").replace("-", "").isalnum() or name in DATASETS:
        raise ParamsError(f"dataset name {name!r} is invalid or taken by a built-in dataset")
    task = "denoise" if color == "gray" else "sr"
    profile = add_folder_dataset(PARAMS_FILE, name, str(path.resolve()), color, task)
    click.echo(f"{name}: {path} registered ({color}, {task}) in profile {profile!r}; `dvc repro` evaluates it")


# --- evaluation -----------------------------------------------------------------------------------------------
@main.command()
@click.option("--method", "method_name", required=True, help="A registered method (see params.yaml).")
@click.option("--dataset", required=True, help="A dataset name (see `n3bench datasets list`).")
@click.option("--setting", type=int,
              help="σ (0–255) for denoising, the scale for SR, 0 (estimate; the default) for real noise.")
@click.option("--weights", default=None,
              help="'official', a checkpoint file, or (default) the profile's fit where it exists, else 'official'.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Also write per-image rows here.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
def evaluate(method_name: str, dataset: str, setting: int, weights: str | None, out: Path | None,
             as_json: bool) -> None:
    """Evaluate one cell (method × dataset × setting), preparing the dataset if needed."""
    from pipeline.correspondence.data import DATASETS as CORRESPONDENCE_DATASETS

    if dataset in CORRESPONDENCE_DATASETS:
        _evaluate_correspondence(method_name, dataset, weights, out, as_json)
        return
    from pipeline.cells import evaluate_cell
    from pipeline.data.catalog import resolve
    from pipeline.data.download import mirror_root
    from pipeline.data.prepare import is_prepared, prepare

    params = load_params()
    entry = resolve(dataset, params.raw.get("folders"))
    if entry.task not in SETTINGS:
        raise ParamsError(f"dataset {dataset!r} belongs to task {entry.task!r}, which `evaluate` does not run")
    if setting is None and entry.task == "realnoise":
        setting = 0
    if setting is None:
        raise ParamsError(f"--setting is required for {dataset!r} (σ for denoising, the scale for SR)")
    weights = weights or _default_weights(params, entry.task, method_name, setting)
    checkpoint = None if weights in ("profile", "none") else weights  # None: evaluate_cell uses the profile's fit
    if not is_prepared(paths.prepared(dataset)):
        prepare(entry, paths.prepared(dataset), raw=paths.raw(), mirror=mirror_root(params.mirror))
    rows = evaluate_cell(params, entry.task, method_name, setting, out, checkpoint, testsets=[dataset])
    result = {"method": method_name, "dataset": dataset, "task": entry.task, "setting": setting,
              "n_images": len(rows), "psnr": round(float(rows["psnr"].mean()), 4),
              "ssim": round(float(rows["ssim"].mean()), 4), "seconds": round(float(rows["seconds"].sum()), 3),
              "weights": weights}
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key:>9}: {value}")


def _default_weights(params: Params, task: str, method_name: str, setting: int) -> str:
    """``"none"`` for a classical method; for a learned one ``"profile"`` (its fit in the active profile) where
    that checkpoint exists or nothing is published, else ``"official"``."""
    from pipeline.fit import MODEL_FILE, make_method
    from pipeline.methods import LearnedMethod

    method = make_method(method_name, params, task, official=True)
    if not isinstance(method, LearnedMethod):
        return "none"
    fitted = (paths.fit_dir(params.profile, task, method_name, setting) / MODEL_FILE).is_file()
    published = setting in method.official or None in method.official
    return "official" if published and not fitted else "profile"


def _evaluate_correspondence(method: str, dataset: str, weights: str | None, out: Path | None,
                             as_json: bool) -> None:
    """Pose mAP of a correspondence classifier (or RANSAC) on a two-view dataset."""
    from pipeline.correspondence.evaluate import evaluate_correspondence

    summary = evaluate_correspondence(method, dataset, weights=Path(weights) if weights else None, out=out,
                                      device=load_params().device)
    result = {"method": method, "dataset": dataset, "task": "correspondence", **summary}
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key:>9}: {value}")


@main.command()
@click.option("--profile", default=None, help="Profile whose results to render (default: the active one).")
def report(profile: str | None) -> None:
    """Regenerate reports/<profile>/ from the metric files and per-image tables."""
    from pipeline.report import build_report_from_params

    click.echo(f"report written to {build_report_from_params(load_params(), profile)}")


# --- your own images ------------------------------------------------------------------------------------------
def _ready_method(method_name: str, task: str, setting: int, checkpoint: str) -> Method:
    """The method with its weights: ``official``, a checkpoint file, or ``profile`` (the active profile's fit)."""
    from pipeline.cells import resolve_weights
    from pipeline.fit import load_fitted, make_method
    from pipeline.methods import LearnedMethod

    params = load_params()
    weights = None if checkpoint == "profile" else checkpoint
    official = checkpoint == "official" or (weights is None and params.task_fit(task).get("mode") == "official")
    method = make_method(method_name, params, task, official=official)
    if isinstance(method, LearnedMethod):
        weights = resolve_weights(params, task, method_name, setting, weights)
        load_fitted(method, weights, setting, params.device)
    return method


@main.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--method", "method_name", default="n3net", show_default=True)
@click.option("--sigma", type=int, required=True, help="Noise level of the image (0–255 scale).")
@click.option("--checkpoint", default="official", show_default=True,
              help="'official', a checkpoint file written by n3bench, or 'profile' for the active profile's fit.")
@click.option("--add-noise", is_flag=True, help="Add seeded Gaussian noise at σ first (a demo on a clean image).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def denoise(image: Path, method_name: str, sigma: int, checkpoint: str, add_noise: bool, output: Path) -> None:
    """Denoise IMAGE (any size; processed in tiles; colour images channel by channel)."""
    from pipeline.restore import denoise_file

    method = _ready_method(method_name, "denoise", sigma, checkpoint)
    click.echo(denoise_file(image, method, sigma, output, add_noise))


@main.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--scale", type=int, required=True, help="Upscaling factor (2, 3 or 4).")
@click.option("--method", "method_name", default="vdsr", show_default=True)
@click.option("--checkpoint", default="official", show_default=True,
              help="'official', a checkpoint file written by n3bench, or 'profile' for the active profile's fit.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def upscale(image: Path, scale: int, method_name: str, checkpoint: str, output: Path) -> None:
    """Upscale IMAGE: luma through the method, chroma by MATLAB bicubic."""
    from pipeline.restore import upscale_file

    method = _ready_method(method_name, "sr", scale, checkpoint)
    click.echo(upscale_file(image, method, scale, output))


# --- benchmark submissions ------------------------------------------------------------------------------------
@main.group(cls=CleanErrors)
def submit() -> None:
    """Denoise a benchmark whose ground truth is private and write the files its website scores."""


@submit.command("dnd")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--method", "method_name", required=True, help="A real-noise method (bm3d, dncnn-b, n3net-pg, …).")
@click.option("--mode", type=click.Choice(["raw", "srgb"]), default="raw", show_default=True)
@click.option("--checkpoint", default="official", show_default=True,
              help="'official', a checkpoint file written by n3bench, or 'profile' for the active profile's fit.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True)
def submit_dnd(root: Path, method_name: str, mode: str, checkpoint: str, output: Path) -> None:
    """Run the DND protocol on the registered download in ROOT (info.mat, images_raw/, images_srgb/).

    Raw mode denoises each Bayer phase of each crop with the image's (a, b) and the phase's σ. The files to
    upload land in OUTPUT/bundled/; the website computes the scores.
    """
    from pipeline.realnoise import dnd

    method = _ready_method(method_name, "realnoise", 0, checkpoint)
    n_images, n_boxes = dnd.dataset_size(root)
    crops = dnd.denoise_dnd(root, output / "crops", _dnd_denoiser(method), mode=mode, n_images=n_images)
    bundle = dnd.bundle_submission(output / "crops", israw=mode == "raw", out_dir=output / "bundled",
                                   n_images=n_images, n_boxes=n_boxes)
    click.echo(f"{len(crops)} crops → {len(bundle)} files in {output / 'bundled'}; upload them at {dnd.DND_SITE}")


def _dnd_denoiser(method: Method) -> Callable[[np.ndarray, NoiseLevel], np.ndarray]:
    """DND's noise levels handed to ``method``: (a, b) to a noise-map network, σ (0–255) to any other."""
    import numpy as np

    from pipeline.methods import LearnedMethod

    def denoise(image: np.ndarray, level: NoiseLevel) -> np.ndarray:
        if not (isinstance(method, LearnedMethod) and method.noise_maps):
            return method.restore(image, max(1, round(level.sigma * 255)))
        if image.ndim == 3:  # sRGB crops: each channel with the image's raw (a, b)
            return np.stack([denoise(image[..., channel], level) for channel in range(image.shape[2])], -1)
        return method.restore_with_levels(image, level.a, level.b)

    return denoise


@submit.command("sidd")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--method", "method_name", required=True, help="A real-noise method (bm3d, dncnn-b, n3net-pg, …).")
@click.option("--checkpoint", default="official", show_default=True,
              help="'official', a checkpoint file written by n3bench, or 'profile' for the active profile's fit.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def submit_sidd(root: Path, method_name: str, checkpoint: str, output: Path) -> None:
    """Denoise SIDD's sRGB benchmark blocks in ROOT (noise level estimated per block) into a submission CSV."""
    from pipeline.realnoise import sidd

    method = _ready_method(method_name, "realnoise", 0, checkpoint)
    blocks = sidd.denoise_blocks(sidd.read_benchmark(root), lambda block: method.restore(block, 0))
    click.echo(f"{blocks.shape[0] * blocks.shape[1]} blocks → {sidd.write_submission(blocks, output)}")
