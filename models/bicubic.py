"""Bicubic interpolation, the super-resolution floor.

The SR task already hands every method the MATLAB-bicubic upscaled luma (the VDSR input convention), so this
baseline returns its input: its scores are those of MATLAB ``imresize(·, 'bicubic')``.
"""

from __future__ import annotations

import numpy as np

from pipeline.methods import METHODS, Method


@METHODS.register("bicubic")
class Bicubic(Method):
    name = "bicubic"
    tasks = ("sr",)

    def restore(self, image: np.ndarray, setting: int) -> np.ndarray:
        return image
