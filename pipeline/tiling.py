"""Run an image-to-image function on overlapping tiles, so any image size fits in memory.

Each tile is processed with a margin of context on every side; only its centre is kept, so a network whose
receptive field is smaller than the margin gives the same result as on the whole image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm import tqdm


def _starts(size: int, tile: int) -> list[int]:
    return list(range(0, max(size - tile, 0) + 1, tile)) + ([size - tile] if size > tile and size % tile else [])


def apply_tiled(
    function: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    tile: int = 512,
    margin: int = 32,
    progress: bool = True,
) -> np.ndarray:
    """``function`` applied to ``image`` (H×W or H×W×C) tile by tile; the whole image at once if it fits a tile."""
    height, width = image.shape[:2]
    if height <= tile and width <= tile:
        return function(image)
    output: np.ndarray | None = None
    corners = [(top, left) for top in _starts(height, tile) for left in _starts(width, tile)]
    for top, left in tqdm(corners, desc="tiles", unit="tile", disable=not progress):
        bottom, right = min(top + tile, height), min(left + tile, width)
        outer_top, outer_left = max(top - margin, 0), max(left - margin, 0)
        window = image[outer_top : min(bottom + margin, height), outer_left : min(right + margin, width)]
        result = function(window)
        if output is None:
            output = np.empty((height, width, *result.shape[2:]), dtype=result.dtype)
        inner = result[top - outer_top : bottom - outer_top, left - outer_left : right - outer_left]
        output[top:bottom, left:right] = inner
    assert output is not None
    return output
