"""Super-resolve a whole 8-bit image with any SR method: :func:`upscale_rgb`.

The method sees exactly what the SR task hands it: the luma upscaled by MATLAB bicubic ``imresize``, float32
``H×W`` in [0, 1]. For RGB input the luma is Y of MATLAB ``rgb2ycbcr``; Cb and Cr are upscaled by the same
bicubic only, and the result goes back through ``ycbcr2rgb``. A gray (``H×W``) image is taken as the luma
itself: its values (/255) go to the method unchanged, without the studio-swing conversion, and the result is
gray.

Large images go through the method in tiles (:func:`pipeline.tiling.apply_tiled`, with a progress bar):
``tile``×``tile`` upscaled pixels plus ``margin`` pixels of context on each side, which is cropped away. For
a local network whose receptive-field radius is at most ``margin`` (VDSR-20: 20 px) the result equals
processing the whole image at once; a non-local method (N³Net-SR) matches only within its tile and margin.
"""

from __future__ import annotations

import numpy as np

from pipeline.data.images import to_uint8
from pipeline.methods import Method
from pipeline.protocols.color import rgb2ycbcr, ycbcr2rgb
from pipeline.protocols.resize import imresize
from pipeline.tiling import apply_tiled

MIN_SIDE = 4  # low-resolution pixels per side: the support of the bicubic kernel
DEFAULT_TILE = 512
DEFAULT_MARGIN = 32


def upscale_rgb(
    image: np.ndarray,
    scale: int,
    method: Method,
    *,
    tile: int = DEFAULT_TILE,
    margin: int = DEFAULT_MARGIN,
) -> np.ndarray:
    """``image`` (uint8 ``H×W×3`` RGB or ``H×W`` gray) super-resolved ×``scale`` by ``method`` → uint8."""
    _check_request(image, scale, method)
    if tile < 1 or margin < 0:
        raise ValueError(f"need tile >= 1 and margin >= 0, got tile={tile}, margin={margin}")
    gray = image.ndim == 2
    upscaled = imresize(image / 255.0 if gray else rgb2ycbcr(image), float(scale))
    luma = upscaled if gray else upscaled[..., 0]
    restored = apply_tiled(lambda window: method.restore(window, scale), luma.astype(np.float32), tile, margin)
    restored = np.clip(restored, 0.0, 1.0)
    if gray:
        return to_uint8(restored)
    return to_uint8(ycbcr2rgb(np.concatenate([restored[..., None], upscaled[..., 1:]], axis=-1)))


def _check_request(image: np.ndarray, scale: int, method: Method) -> None:
    """Refuse, with a ValueError (TypeError for a wrong dtype), what :func:`upscale_rgb` cannot do."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 numpy image, got {getattr(image, 'dtype', type(image))}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected an H×W×3 RGB or H×W gray image, got shape {image.shape}")
    if min(image.shape[:2]) < MIN_SIDE:
        raise ValueError(f"image of {image.shape[0]}×{image.shape[1]} px is too small: need ≥ {MIN_SIDE} px a side")
    if "sr" not in method.tasks:
        raise ValueError(f"method {method.name!r} does not do super-resolution (its tasks: {method.tasks})")
    supported = getattr(method, "settings", None)
    if not isinstance(scale, int) or scale < 2 or (supported is not None and scale not in supported):
        allowed = f"one of {tuple(supported)}" if supported is not None else "an integer ≥ 2"
        raise ValueError(f"method {method.name!r} cannot upscale ×{scale}: the scale must be {allowed}")

