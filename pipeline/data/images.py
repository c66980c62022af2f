"""Reading and writing images losslessly, with errors that name the file."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.errors import UserError

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".ppm", ".pgm")


class ImageReadError(UserError, ValueError):
    """A file that is missing, truncated or not an image."""


def read_image(path: Path) -> np.ndarray:
    """An 8-bit image as ``H×W`` (gray) or ``H×W×3`` (RGB) uint8; alpha is dropped, palettes expanded."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("L", "RGB"):
                converted = image
            elif image.mode == "P" and _palette_is_gray(image):
                converted = image.convert("L")
            elif image.mode in ("I;16", "I", "F"):
                raise ImageReadError(f"{path}: {image.mode} images are not 8-bit; convert them first")
            else:
                converted = image.convert("RGB")
            return np.asarray(converted, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageReadError(f"{path}: not a readable image ({error})") from None


def _palette_is_gray(image: Image.Image) -> bool:
    rgb = np.asarray(image.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def png_bytes(array: np.ndarray) -> bytes:
    """Lossless PNG encoding of a uint8 ``H×W`` or ``H×W×3`` array."""
    if array.dtype != np.uint8:
        raise TypeError(f"PNG images are stored as uint8, got {array.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_png(path: Path, array: np.ndarray) -> str:
    """Write ``array`` as PNG atomically; returns the SHA-256 of the stored bytes."""
    data = png_bytes(array)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def to_float(array: np.ndarray) -> np.ndarray:
    """uint8 → float32 in [0, 1]."""
    return array.astype(np.float32) / 255.0


def to_uint8(array: np.ndarray) -> np.ndarray:
    """float in [0, 1] → uint8, clipped and rounded (MATLAB ``im2uint8``)."""
    return np.clip(np.round(np.asarray(array, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
