"""Seeded synthetic noise: every method sees the same noisy image, and reruns give identical numbers.

Each noise draw has its own generator, seeded from a sha256 of a key that names the draw (noise model,
dataset, image, σ, seed, repeat). The noise of one image therefore does not depend on which images were drawn
before it, nor on the order. Other noise models reuse ``noise_rng`` with their own first key part.
"""

from __future__ import annotations

import hashlib
import json
import numbers

import numpy as np

from pipeline.protocols.color import round_half_away

KeyPart = str | int | float


def _encode(part: KeyPart) -> str:
    """A type-tagged text form; integral floats equal their int (σ = 25 and 25.0 give the same noise)."""
    if isinstance(part, str):
        return "s:" + part
    if isinstance(part, bool | np.bool_):
        raise TypeError("noise key parts must not be booleans")
    if isinstance(part, numbers.Integral):
        return "n:" + repr(int(part))
    if isinstance(part, numbers.Real):
        value = float(part)
        return "n:" + repr(int(value) if value.is_integer() else value)
    raise TypeError(f"noise key parts must be str, int or float, got {type(part).__name__}")


def noise_rng(*key: KeyPart) -> np.random.Generator:
    """A PCG64 generator seeded by the sha256 of the key parts: the same state on every run and platform."""
    if not key:
        raise ValueError("noise_rng needs at least one key part")
    text = json.dumps([_encode(part) for part in key])  # unambiguous: no two keys share a text
    digest = hashlib.sha256(text.encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest, "big")))


def add_gaussian_noise(
    clean: np.ndarray,
    sigma: float,
    *,
    dataset: str,
    image: str,
    seed: int = 0,
    repeat: int = 0,
    clip: bool = False,
    quantize: bool = False,
) -> np.ndarray:
    """``clean + σ/255 · N(0, 1)`` in float32 for a clean image in [0, 1].

    By default the result is neither clipped nor quantised (the N3Net protocol). ``clip`` clips it to [0, 1];
    ``quantize`` clips and then rounds it to the 1/255 grid.
    """
    clean = np.asarray(clean)
    if not np.issubdtype(clean.dtype, np.floating):
        raise TypeError(f"clean image must be floating point in [0, 1], got {clean.dtype}")
    if sigma < 0:
        raise ValueError(f"sigma must be non-negative, got {sigma}")
    rng = noise_rng("gaussian", dataset, image, float(sigma), seed, repeat)
    noise = rng.standard_normal(clean.shape, dtype=np.float32)
    noisy = clean.astype(np.float32) + np.float32(sigma / 255.0) * noise
    if clip or quantize:
        noisy = np.clip(noisy, 0.0, 1.0)
    if quantize:
        noisy = (round_half_away(noisy * np.float32(255.0)) / np.float32(255.0)).astype(np.float32)
    return noisy
