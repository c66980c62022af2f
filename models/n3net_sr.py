"""N³Net for super-resolution: VDSR stages interleaved with N³ blocks, on the bicubic-upscaled luma.

The official code has no SISR part and the paper's text could not be checked (``n3net_spec.md`` §f), so the
layout follows the denoising N³Net with VDSR stages in place of DnCNN stages; every choice is a
hyper-parameter:

- ``stages`` VDSR stages (:class:`models.vdsr.VDSRStage`: bias-free 3×3 convs, ReLUs, no BatchNorm) of
  ``stage_depth`` convs and ``features`` channels, with an N³ block between each two;
- stage 1 maps 1 → ``interm_channels``, the middle stages ``(k + 1)·interm_channels`` → ``interm_channels``,
  the last ``(k + 1)·interm_channels`` → 1; each stage adds its input's first ``min(C_in, C_out)`` channels
  to its output, so the upscaled luma reaches the output through the identity paths of channel 0 (VDSR's
  global residual);
- defaults (assumptions, not paper facts): 3 stages of depth 7 (21 convs, against VDSR's 20), 64 features,
  8 intermediate channels, k = 7, and the denoising block's 10 px patches, stride 5, 15×15 window.

Inputs of at least :attr:`N3NetSR.min_size` px a side (80 by default: the N³ search window) always work. No official
weights exist; the model is trained.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.n3block import N3Block
from models.vdsr import LumaSRMethod, VDSRStage, check_scale
from pipeline.methods import METHODS


class N3NetSR(nn.Module):
    """``stage → N³ → stage → … → stage`` on one luma channel; ``block`` holds :class:`N3Block` options."""

    def __init__(
        self,
        stages: int = 3,
        stage_depth: int = 7,
        features: int = 64,
        interm_channels: int = 8,
        k: int = 7,
        **block: Any,
    ) -> None:
        super().__init__()
        if stages < 2:
            raise ValueError(f"N3Net-SR needs at least 2 stages (one N³ block), got {stages}")
        wide = (k + 1) * interm_channels
        inputs = [1] + [wide] * (stages - 1)
        outputs = [interm_channels] * (stages - 1) + [1]
        self.stages = nn.ModuleList(
            VDSRStage(width_in, width_out, stage_depth, features)
            for width_in, width_out in zip(inputs, outputs, strict=True)
        )
        self.blocks = nn.ModuleList(N3Block(interm_channels, k=k, **block) for _ in range(stages - 1))

    @property
    def min_size(self) -> int:
        """The side the N³ blocks need after padding to their patch grid; inputs this large always work."""
        return self.blocks[0].min_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage, block in zip(self.stages, self.blocks, strict=False):
            x = block(stage(x))
        return self.stages[-1](x)


@METHODS.register("n3net-sr")
class N3NetSRMethod(LumaSRMethod):
    """N³Net-SR as a method; hyper-parameters are :class:`N3NetSR`'s arguments. One model for all scales."""

    name = "n3net-sr"

    def build_network(self, setting: int) -> N3NetSR:
        check_scale(setting, self.settings)
        return N3NetSR(**self.hparams)
