"""Apply a method to the user's own image files (the ``n3bench denoise`` and ``upscale`` commands)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.images import read_image, to_float, to_uint8, write_png
from pipeline.methods import Method
from pipeline.protocols.metrics import psnr
from pipeline.protocols.noise import add_gaussian_noise
from pipeline.tiling import apply_tiled

#: tile edge and context margin for large images (the margin covers DnCNN's receptive field and N3Net's search
#: window, so only non-local matches farther than it from a tile are lost)
TILE, MARGIN = 512, 64


def denoise_array(noisy: np.ndarray, method: Method, sigma: int) -> np.ndarray:
    """Denoise a float image (H×W, or H×W×C channel by channel), in tiles when large."""
    if noisy.ndim == 3:
        return np.stack([denoise_array(noisy[..., channel], method, sigma) for channel in range(noisy.shape[2])], -1)
    return apply_tiled(lambda window: method.restore(window, sigma), noisy, TILE, MARGIN)


def denoise_file(image: Path, method: Method, sigma: int, output: Path, add_noise: bool = False) -> str:
    """Denoise ``image`` into ``output`` (8-bit PNG); returns a one-line summary."""
    clean = to_float(read_image(image))
    noisy = add_gaussian_noise(clean, sigma, dataset="cli", image=image.stem) if add_noise else clean
    estimate = denoise_array(noisy.astype(np.float32), method, sigma)
    write_png(output, to_uint8(estimate))
    summary = f"{image} → {output} ({method.name}, σ={sigma}, {clean.shape[1]}×{clean.shape[0]})"
    if add_noise:
        noisy_db, estimate_db = psnr(noisy, clean), psnr(estimate, clean)
        summary += f"; PSNR noisy {noisy_db:.2f} dB → {estimate_db:.2f} dB"
    return summary


def upscale_file(image: Path, method: Method, scale: int, output: Path) -> str:
    """Upscale ``image`` by ``scale`` into ``output`` (8-bit PNG); returns a one-line summary."""
    from pipeline.upscale import upscale_rgb

    low = read_image(image)
    high = upscale_rgb(low, scale, method)
    write_png(output, high)
    sizes = f"{low.shape[1]}×{low.shape[0]} → {high.shape[1]}×{high.shape[0]}"
    return f"{image} → {output} ({method.name} ×{scale}, {sizes})"
