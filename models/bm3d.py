"""BM3D (Dabov et al., TIP 2007) through the ``bm3d`` package: gray images with BM3D, RGB images with CBM3D.

The setting is σ on the 0–255 scale. Real noise comes without a level, so setting 0 estimates it per image:
scikit-image's ``estimate_sigma`` (median absolute deviation of the finest diagonal wavelet subband, Donoho 1995),
averaged over the channels. It assumes white noise; real camera noise is spatially correlated, so the estimate
is low (see docs/realnoise.md). Each image runs single-threaded (deterministic); images run in parallel
processes, one per core.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from pipeline.methods import METHODS, Method


def estimate_noise_sigma(image: np.ndarray) -> float:
    """σ of white Gaussian noise in an image in [0, 1] (H×W or H×W×3), on the 0–255 scale."""
    from skimage.restoration import estimate_sigma

    image = np.asarray(image, dtype=np.float64)
    return 255.0 * float(estimate_sigma(image, channel_axis=-1 if image.ndim == 3 else None, average_sigmas=True))


def single_threaded(name: str) -> object:
    """The ``bm3d`` profile called ``name`` with one thread: the library's default (``num_threads = 0``, every
    core) changes the last float digits from run to run, and the images already run in parallel processes."""
    import bm3d

    classes = {"np": bm3d.BM3DProfile, "refilter": bm3d.BM3DProfileRefilter, "vn": bm3d.BM3DProfileVN,
               "high": bm3d.BM3DProfileHigh, "vn_old": bm3d.BM3DProfileVNOld, "deb": bm3d.BM3DProfileDeb,
               "lc": bm3d.BM3DProfileLC}
    if name not in classes:
        raise ValueError(f"unknown bm3d profile {name!r}; valid: {', '.join(classes)}")
    profile = classes[name]()
    profile.num_threads = 1
    return profile


def _bm3d(image: np.ndarray, setting: int, name: str, colorspace: str) -> np.ndarray:
    import bm3d

    profile = single_threaded(name)
    sigma = (setting if setting > 0 else estimate_noise_sigma(image)) / 255.0
    if image.ndim == 3:
        if image.shape[2] != 3:
            raise ValueError(f"BM3D denoises gray or H×W×3 RGB images, got shape {image.shape}")
        return np.asarray(bm3d.bm3d_rgb(image, sigma_psd=sigma, profile=profile, colorspace=colorspace), np.float32)
    return np.asarray(bm3d.bm3d(image, sigma_psd=sigma, profile=profile), dtype=np.float32)


@METHODS.register("bm3d")
class BM3D(Method):
    """Collaborative filtering of grouped similar blocks (CBM3D in an opponent colour space for RGB)."""

    name = "bm3d"
    tasks = ("denoise", "realnoise")
    batch_size = 2 * (os.cpu_count() or 1)

    def _options(self) -> tuple[str, str]:
        return self.hparams.get("profile", "np"), self.hparams.get("colorspace", "opp")

    def restore(self, image: np.ndarray, setting: int) -> np.ndarray:
        return _bm3d(image, setting, *self._options())

    def restore_batch(self, images: Sequence[np.ndarray], setting: int) -> list[np.ndarray]:
        workers = min(len(images), int(self.hparams.get("workers") or os.cpu_count() or 1))
        if workers <= 1:
            return [self.restore(image, setting) for image in images]
        count, (profile, colorspace) = len(images), self._options()
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(_bm3d, images, [setting] * count, [profile] * count, [colorspace] * count))
