"""The bundled sample datasets of the smoke profile, cut deterministically from scikit-image's photographs.

They need no network: scikit-image ships these images inside its wheel.
"""

from __future__ import annotations

import numpy as np
from skimage import data

RECIPES: dict[str, tuple[tuple[str, ...], int]] = {
    "gray": (("camera", "coins", "moon", "clock"), 128),
    "rgb": (("astronaut", "coffee", "chelsea"), 132),
    "train": (("rocket", "immunohistochemistry", "hubble_deep_field", "cat", "retina", "colorwheel"), 256),
}


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size × size`` window (the image must be at least that large)."""
    height, width = image.shape[:2]
    if min(height, width) < size:
        raise ValueError(f"image of {height}×{width} is smaller than the {size}×{size} crop")
    top, left = (height - size) // 2, (width - size) // 2
    return image[top : top + size, left : left + size]


def generate(recipe: str) -> list[tuple[str, np.ndarray]]:
    """``(image id, uint8 array)`` pairs of a sample dataset."""
    names, size = RECIPES[recipe]
    images = []
    for name in names:
        image = np.asarray(getattr(data, name)())
        if image.ndim == 3:
            image = image[..., :3]
        images.append((name, np.ascontiguousarray(center_crop(image, size)).astype(np.uint8)))
    return images
