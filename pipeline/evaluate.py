"""Evaluate one (task, method, setting) cell on the profile's test sets.

Every method goes through the same code: the task degrades each clean image (seeded noise, or MATLAB bicubic
down- and up-scaling), the method restores it, the task scores the result. Per-image results are cached under a
key of the cell's configuration, so an interrupted evaluation resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.data.images import atomic_write_bytes, read_image, to_float, to_uint8, write_png
from pipeline.data.prepare import load_manifest
from pipeline.errors import UserError
from pipeline.methods import Method

ROW_COLUMNS = ["task", "method", "dataset", "setting", "image", "psnr", "ssim", "seconds", "profile"]


class EvaluationError(UserError, RuntimeError):
    """A method produced something that cannot be scored; the message names the method and image."""


@dataclass(frozen=True)
class Sample:
    """One test image: what the method sees and what it is scored against."""

    dataset: str
    image: str
    degraded: np.ndarray
    reference: np.ndarray


class Task:
    """How a task degrades clean images and scores restorations."""

    name = ""

    def __init__(self, protocol: dict[str, Any], seed: int = 0) -> None:
        self.protocol = protocol
        self.seed = seed

    def degrade(self, clean: np.ndarray, dataset: str, image: str, setting: int) -> Sample:
        raise NotImplementedError

    def score(self, estimate: np.ndarray, sample: Sample, setting: int) -> tuple[float, float]:
        raise NotImplementedError

    def samples(self, dataset: str, folder: Path, setting: int, max_images: int | None) -> Iterator[Sample]:
        """The degraded test images of a prepared dataset, in manifest order."""
        manifest = load_manifest(folder, dataset)
        for image in manifest["image"].tolist()[:max_images]:
            yield self.degrade(read_image(folder / f"{image}.png"), dataset, image, setting)

    def shown(self, array: np.ndarray) -> np.ndarray:
        """The image as a figure shows it (uint8)."""
        return to_uint8(array)


class DenoiseTask(Task):
    """Gray AWGN: noise at σ (0–255 scale) seeded per (dataset, image, σ); PSNR/SSIM on the whole image."""

    name = "denoise"

    def degrade(self, clean: np.ndarray, dataset: str, image: str, setting: int) -> Sample:
        from pipeline.protocols.noise import add_gaussian_noise

        if clean.ndim != 2:
            raise EvaluationError(f"{dataset}/{image}: Gaussian denoising is gray-only; prepare it as gray")
        reference = to_float(clean)
        noisy = add_gaussian_noise(
            reference,
            setting,
            dataset=dataset,
            image=image,
            seed=self.seed,
            clip=self.protocol.get("noise_clip", False),
            quantize=self.protocol.get("noise_quantize", False),
        )
        return Sample(dataset, image, noisy, reference)

    def score(self, estimate: np.ndarray, sample: Sample, setting: int) -> tuple[float, float]:
        from pipeline.protocols.metrics import psnr, ssim

        quantize = self.protocol.get("output_quantize", True)
        return (
            psnr(estimate, sample.reference, quantize=quantize),
            ssim(estimate, sample.reference, quantize=quantize),
        )


class SuperResolutionTask(Task):
    """SISR on Y: HR cropped to a multiple of the scale, MATLAB bicubic down and up, scored with a border crop.

    With ``y_quantize`` the luma is rounded to 8 bits first (MATLAB ``rgb2ycbcr`` on uint8 input) and with
    ``output_quantize`` the estimate is clipped and rounded before scoring: the convention under which MATLAB
    bicubic gives the published Set5 numbers (33.66 / 30.39 / 28.42 dB).
    """

    name = "sr"

    def luma(self, image: np.ndarray) -> np.ndarray:
        """Y of MATLAB ``rgb2ycbcr`` in [0, 1] (a gray image is its own luma)."""
        from pipeline.protocols.color import rgb2ycbcr

        if image.ndim == 2:
            return image.astype(np.float64) / 255.0
        y = rgb2ycbcr(image)[..., 0]
        return np.round(y * 255.0) / 255.0 if self.protocol.get("y_quantize", True) else y

    @staticmethod
    def low_resolution(luma: np.ndarray, scale: int) -> np.ndarray:
        """The low-resolution luma: MATLAB bicubic downscaling by ``scale`` (float64, unclipped)."""
        from pipeline.protocols.resize import imresize

        return imresize(luma.astype(np.float64), 1.0 / scale)

    @classmethod
    def degrade_luma(cls, luma: np.ndarray, scale: int) -> np.ndarray:
        """The network input for a luma whose sides are multiples of ``scale``: bicubic down, then up."""
        from pipeline.protocols.resize import imresize

        return imresize(cls.low_resolution(luma, scale), output_shape=luma.shape[:2]).astype(np.float32)

    def degrade(self, clean: np.ndarray, dataset: str, image: str, setting: int) -> Sample:
        height, width = (size - size % setting for size in clean.shape[:2])
        reference = self.luma(clean[:height, :width])
        return Sample(dataset, image, self.degrade_luma(reference, setting), reference)

    def score(self, estimate: np.ndarray, sample: Sample, setting: int) -> tuple[float, float]:
        from pipeline.protocols.metrics import psnr, ssim

        clipped = np.clip(estimate.astype(np.float64), 0.0, 1.0)
        quantize = self.protocol.get("output_quantize", True)
        return (
            psnr(clipped, sample.reference, crop_border=setting, quantize=quantize),
            ssim(clipped, sample.reference, crop_border=setting, quantize=quantize),
        )


TASKS: dict[str, type[Task]] = {"denoise": DenoiseTask, "sr": SuperResolutionTask}


def cell_key(config: dict[str, Any]) -> str:
    """A short stable hash of everything that determines a cell's results."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _checked(method: Method, sample: Sample, output: np.ndarray) -> np.ndarray:
    output = np.asarray(output)
    if output.shape != sample.reference.shape:
        raise EvaluationError(
            f"method {method.name!r} returned shape {output.shape} for {sample.dataset}/{sample.image}, "
            f"expected {sample.reference.shape}"
        )
    if not np.isfinite(output).all():
        raise EvaluationError(f"method {method.name!r} returned NaN or inf for {sample.dataset}/{sample.image}")
    return output


@dataclass
class Cell:
    """One evaluation cell and where its per-image cache and example outputs go."""

    task: Task
    method: Method
    setting: int
    profile: str
    cache: Path
    examples: Path | None = None
    batch: int = 1

    def _cached(self, sample_id: str) -> dict[str, Any] | None:
        path = self.cache / f"{sample_id}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def _record(self, sample: Sample, output: np.ndarray, seconds: float, first: bool) -> dict[str, Any]:
        psnr_value, ssim_value = self.task.score(output, sample, self.setting)
        row = {
            "task": self.task.name,
            "method": self.method.name,
            "dataset": sample.dataset,
            "setting": self.setting,
            "image": sample.image,
            "psnr": float(psnr_value),
            "ssim": float(ssim_value),
            "seconds": seconds,
            "profile": self.profile,
        }
        atomic_write_bytes(self.cache / f"{sample.dataset}__{sample.image}.json", json.dumps(row).encode())
        if first and self.examples is not None:
            self._write_examples(sample, output)
        return row

    def _write_examples(self, sample: Sample, output: np.ndarray) -> None:
        """The output, the degraded input and the reference of a dataset's first image, for the report's grids."""
        stem = self.examples / f"{sample.dataset}__{sample.image}"
        for suffix, array in (("", output), ("__degraded", sample.degraded), ("__reference", sample.reference)):
            write_png(stem.with_name(stem.name + suffix + ".png"), self.task.shown(array))

    def run(self, datasets: Sequence[tuple[str, Path]], max_images: int | None = None) -> pd.DataFrame:
        """Evaluate every image of ``datasets`` (name, prepared folder); cached images are not recomputed."""
        rows = []
        for dataset, folder in datasets:
            pending = []
            for index, sample in enumerate(self.task.samples(dataset, folder, self.setting, max_images)):
                sample_id = f"{dataset}__{sample.image}"
                example_missing = self.examples is not None and not (self.examples / f"{sample_id}.png").exists()
                cached = self._cached(sample_id)
                if cached is not None and not (index == 0 and example_missing):
                    rows.append(cached)
                else:
                    pending.append((index == 0, sample))
            rows.extend(self._restore(pending, dataset))
        table = pd.DataFrame(rows, columns=ROW_COLUMNS)
        return table.sort_values(["dataset", "image"], kind="stable", ignore_index=True)

    def _restore(self, pending: list[tuple[bool, Sample]], dataset: str) -> list[dict[str, Any]]:
        rows = []
        label = f"{self.method.name} σ/s={self.setting} {dataset}"
        with tqdm(total=len(pending), desc=label, unit="img", leave=False) as bar:
            for start in range(0, len(pending), self.batch):
                chunk = pending[start : start + self.batch]
                began = time.perf_counter()
                outputs = self.method.restore_batch([sample.degraded for _, sample in chunk], self.setting)
                seconds = (time.perf_counter() - began) / len(chunk)
                for (first, sample), output in zip(chunk, outputs, strict=True):
                    rows.append(self._record(sample, _checked(self.method, sample, output), seconds, first))
                bar.update(len(chunk))
        return rows


def summarise(rows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per-dataset means, rounded so that reruns give identical files."""
    summary = {}
    for dataset, group in rows.groupby("dataset", sort=True):
        summary[str(dataset)] = {
            "psnr": round(float(group["psnr"].mean()), 4),
            "ssim": round(float(group["ssim"].mean()), 4),
            "n_images": len(group),
        }
    return summary


import pipeline.realnoise.task  # noqa: E402, F401  (registers the "realnoise" task; it subclasses Task)
