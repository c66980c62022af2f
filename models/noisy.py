"""The noisy input itself: the floor every denoiser is compared against (and its bootstrap reference)."""

from __future__ import annotations

import numpy as np

from pipeline.methods import METHODS, Method


@METHODS.register("noisy")
class NoisyInput(Method):
    name = "noisy"
    tasks = ("denoise", "realnoise")

    def restore(self, image: np.ndarray, setting: int) -> np.ndarray:
        return image
