"""BM3D (Dabov et al., TIP 2007) through the ``bm3d`` package: gray images, known σ."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from pipeline.methods import METHODS, Method


def _bm3d(image: np.ndarray, sigma: float, profile: str) -> np.ndarray:
    import bm3d

    return np.asarray(bm3d.bm3d(image, sigma_psd=sigma / 255.0, profile=profile), dtype=np.float32)


@METHODS.register("bm3d")
class BM3D(Method):
    """Collaborative filtering of grouped similar blocks; images run in parallel on every core."""

    name = "bm3d"
    tasks = ("denoise",)
    batch_size = 2 * (os.cpu_count() or 1)

    def restore(self, image: np.ndarray, setting: int) -> np.ndarray:
        return _bm3d(image, setting, self.hparams.get("profile", "np"))

    def restore_batch(self, images: Sequence[np.ndarray], setting: int) -> list[np.ndarray]:
        workers = min(len(images), int(self.hparams.get("workers") or os.cpu_count() or 1))
        if workers <= 1:
            return [self.restore(image, setting) for image in images]
        profile = self.hparams.get("profile", "np")
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(_bm3d, images, [setting] * len(images), [profile] * len(images)))
