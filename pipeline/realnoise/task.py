"""The ``realnoise`` task: denoise real photographs of a paired dataset (CC15) and score them as published.

Nothing is synthesised: each sample's input is the stored noisy photograph and its reference the stored mean
image, both read from the prepared folder by :meth:`RealNoiseTask.samples`, which replaces the per-image
``degrade`` of the synthetic tasks (a clean image alone cannot give its real noisy partner).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.data.images import to_float
from pipeline.data.prepare import load_manifest
from pipeline.evaluate import TASKS, EvaluationError, Sample, Task
from pipeline.protocols.color import round_half_away
from pipeline.protocols.metrics import ssim
from pipeline.realnoise.cc15 import psnr_rgb, read_pairs


def quantized(image: np.ndarray) -> np.ndarray:
    """A [0, 1] float image clipped and rounded (half away from zero) to the 8-bit grid, as float64."""
    return round_half_away(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0) / 255.0


class RealNoiseTask(Task):
    """Paired real noise: RGB PSNR of ``csnr.m`` (mean of the per-channel MSEs) and the MATLAB-style SSIM
    averaged over the channels, both on the whole image.

    The setting is the method's knob, not the task's: 0 asks the method to estimate the noise level, a positive
    value fixes σ (0–255 scale). Protocol: ``output_quantize`` (default true) clips and rounds the estimate to
    8 bits before scoring, as an 8-bit result file would be.
    """

    name = "realnoise"

    def samples(self, dataset: str, folder: Path, setting: int, max_images: int | None) -> Iterator[Sample]:
        """One sample per crop of the prepared ``folder``, sorted by crop: the stored noisy image (float32) and
        the stored mean (float64, so that an 8-bit estimate equal to it scores an exact match) in [0, 1]."""
        load_manifest(folder, dataset)
        for index, (image, noisy, clean) in enumerate(read_pairs(folder)):
            if max_images is not None and index >= max_images:
                return
            yield Sample(dataset, image, to_float(noisy), clean / 255.0)

    def degrade(self, clean: np.ndarray, dataset: str, image: str, setting: int) -> Sample:
        raise EvaluationError(
            f"{dataset}/{image}: real noise cannot be synthesised from a clean image; "
            "the realnoise task reads stored (noisy, mean) pairs through samples()"
        )

    def score(self, estimate: np.ndarray, sample: Sample, setting: int) -> tuple[float, float]:
        if self.protocol.get("output_quantize", True):
            estimate = quantized(estimate)
        return psnr_rgb(estimate, sample.reference, data_range=1.0), ssim(estimate, sample.reference, quantize=False)


TASKS[RealNoiseTask.name] = RealNoiseTask
