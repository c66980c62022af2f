"""The bundled sample datasets of the smoke profile, cut deterministically from scikit-image's photographs.

They need no network: scikit-image ships these images inside its wheel. The ``pg`` recipe is a stand-in for a
real-noise set such as CC15 (which only a download or a mirror provides): RGB crops with seeded Poisson-Gaussian
noise (:func:`~pipeline.protocols.pgnoise.seeded_poisson_gaussian`, one (a, b) per image, applied to every channel
of the 8-bit image in [0, 1], clipped and rounded to 8 bits), stored in CC15's layout as ``<crop>_real`` (noisy)
and ``<crop>_mean`` (clean) pairs.
"""

from __future__ import annotations

import numpy as np
from skimage import data

from pipeline.data.images import to_float, to_uint8
from pipeline.protocols.pgnoise import seeded_poisson_gaussian

RECIPES: dict[str, tuple[tuple[str, ...], int]] = {
    "gray": (("camera", "coins", "moon", "clock"), 128),
    "rgb": (("astronaut", "coffee", "chelsea"), 132),
    "train": (("rocket", "immunohistochemistry", "hubble_deep_field", "cat", "retina", "colorwheel"), 256),
    "pg": (("astronaut", "coffee", "chelsea"), 96),
}
#: recipes stored as (noisy, clean) pairs, and the dataset name that keys their noise
NOISY_PAIRS = {"pg": "sample_pg"}


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size × size`` window (the image must be at least that large)."""
    height, width = image.shape[:2]
    if min(height, width) < size:
        raise ValueError(f"image of {height}×{width} is smaller than the {size}×{size} crop")
    top, left = (height - size) // 2, (width - size) // 2
    return image[top : top + size, left : left + size]


def _crops(recipe: str) -> list[tuple[str, np.ndarray]]:
    names, size = RECIPES[recipe]
    images = []
    for name in names:
        image = np.asarray(getattr(data, name)())
        if image.ndim == 3:
            image = image[..., :3]
        images.append((name, np.ascontiguousarray(center_crop(image, size)).astype(np.uint8)))
    return images


def _noisy_pairs(crops: list[tuple[str, np.ndarray]], dataset: str) -> list[tuple[str, np.ndarray]]:
    pairs = []
    for name, clean in crops:
        noisy = seeded_poisson_gaussian(to_float(clean), dataset=dataset, image=name).noisy
        pairs += [(f"{name}_real", to_uint8(noisy)), (f"{name}_mean", clean)]
    return pairs


def generate(recipe: str) -> list[tuple[str, np.ndarray]]:
    """``(image id, uint8 array)`` pairs of a sample dataset."""
    crops = _crops(recipe)
    return _noisy_pairs(crops, NOISY_PAIRS[recipe]) if recipe in NOISY_PAIRS else crops
