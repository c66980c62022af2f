"""VDSR (Kim et al., CVPR 2016) for single-image super-resolution, and the importer for its PyTorch port.

VDSR restores the MATLAB-bicubic upscaled Y channel (float32 ``H×W`` in [0, 1], as the SR task hands it):
``output = input + layers(input)`` with ``depth`` bias-free 3×3 "same" convs of ``features`` channels and a
ReLU after all but the last. One model serves every scale (×2, ×3, ×4).

The local stage (:class:`VDSRStage`: the layer stack plus an identity path on the shared channels) is also
N³Net-SR's building block; VDSR itself is the single 1 → 1 stage.

Official weights: the PyTorch port ``twtygqyy/pytorch-vdsr`` ``model/model_epoch_50.pth``, a whole-model
pickle of PyTorch 0.3 (``{'epoch': 50, 'model': vdsr.Net}``). It is read through :mod:`pipeline.safe_pickle`:
only torch's tensor-rebuild helpers and ``OrderedDict`` resolve, and the classes in :data:`PORT_STUBS` become
inert stubs, so none of the file's code runs. Its 20 conv weights (no biases) map strictly, in layer order,
onto ``VDSR(depth=20)``:

============================================  =====================================
port key                                      n3bench key
============================================  =====================================
``input.weight`` (64, 1, 3, 3)                ``layers.0.weight``
``residual_layer.{i}.conv.weight``, i < 18    ``layers.{2i + 2}.weight``
``output.weight`` (1, 64, 3, 3)               ``layers.38.weight`` (``2·(depth − 1)``)
============================================  =====================================

Any missing, extra or differently shaped tensor is an error.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.download import RemoteFile
from pipeline.methods import METHODS, LearnedMethod, SettingError
from pipeline.safe_pickle import ModuleStub, load_torch_pickle

SR_SCALES = (2, 3, 4)
PORT_STUBS = (
    "vdsr.Net",
    "vdsr.Conv_ReLU_Block",
    "torch.nn.modules.conv.Conv2d",
    "torch.nn.modules.activation.ReLU",
    "torch.nn.modules.container.Sequential",
    "torch.nn.backends.thnn._get_thnn_function_backend",
)
PORT_FILE = RemoteFile(
    url="https://raw.githubusercontent.com/twtygqyy/pytorch-vdsr/"
    "514b021044018baf909e79f48392783daa592888/model/model_epoch_50.pth",
    sha256="eab4d79ae5a6e5acef4c55e46015aed225ade207679bcb6695b07af8fb18e876",
    size=2_680_962,
    mirror_path="pretrained/vdsr_twtygqyy_epoch50.pth",
)


def check_scale(scale: int, scales: tuple[int, ...] = SR_SCALES) -> None:
    """Refuse a super-resolution setting other than ``scales``."""
    if scale not in scales:
        raise SettingError(f"super-resolution scale must be one of {scales}, got {scale!r}")


def vdsr_layers(in_channels: int, out_channels: int, depth: int, features: int) -> nn.Sequential:
    """``depth`` bias-free 3×3 "same" convs with a ReLU after all but the last: ``conv, ReLU, …, conv``."""
    if depth < 2:
        raise ValueError(f"a VDSR layer stack needs depth >= 2, got {depth}")
    widths = [in_channels] + [features] * (depth - 1) + [out_channels]
    layers: list[nn.Module] = []
    for width_in, width_out in itertools.pairwise(widths):
        layers += [
            nn.Conv2d(width_in, width_out, kernel_size=3, padding=1, bias=False),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers[:-1])


class VDSRStage(nn.Module):
    """A VDSR layer stack whose output gets the input's first ``min(C_in, C_out)`` channels added."""

    def __init__(
        self, in_channels: int = 1, out_channels: int = 1, depth: int = 20, features: int = 64
    ) -> None:
        super().__init__()
        self.layers = vdsr_layers(in_channels, out_channels, depth, features)
        for conv in self.layers[::2]:  # He-normal on fan-out, as VDSR and its port initialise
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        shared = min(x.shape[1], out.shape[1])
        return out + F.pad(x[:, :shared], (0, 0, 0, 0, 0, out.shape[1] - shared))


class VDSR(VDSRStage):
    """VDSR on one channel: a global residual around ``depth`` convs (receptive field ``2·depth + 1`` px)."""

    def __init__(self, depth: int = 20, features: int = 64) -> None:
        super().__init__(1, 1, depth, features)


def port_keys(depth: int) -> list[str]:
    """The port's conv weight names in layer order."""
    middle = [f"residual_layer.{index}.conv.weight" for index in range(depth - 2)]
    return ["input.weight", *middle, "output.weight"]


def read_port(path: Path, depth: int = 20) -> OrderedDict[str, torch.Tensor]:
    """The port's whole-model pickle (read without running its code) as a state dict of ``VDSR(depth)``."""
    checkpoint = load_torch_pickle(path, stubs=PORT_STUBS)
    model = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(model, ModuleStub):
        raise ValueError(f"{path.name}: expected a dict with a pickled 'model', as the VDSR port saves")
    weights = model.state_dict()
    expected = port_keys(depth)
    if sorted(weights) != sorted(expected):
        raise ValueError(
            f"{path.name}: tensors {sorted(weights)} do not match a depth-{depth} VDSR without biases"
        )
    return OrderedDict((f"layers.{2 * index}.weight", weights[key]) for index, key in enumerate(expected))


class LumaSRMethod(LearnedMethod):
    """A network that restores the bicubic-upscaled luma, one model for every scale in :attr:`settings`."""

    tasks = ("sr",)
    settings: ClassVar[tuple[int, ...]] = SR_SCALES

    def restore(self, image: np.ndarray, setting: int) -> np.ndarray:
        """The restored luma of a bicubic-upscaled ``H×W`` luma in [0, 1] (float32, not clipped)."""
        check_scale(setting, self.settings)
        if image.ndim != 2:
            raise ValueError(f"{self.name} restores one luma channel (H×W), got shape {image.shape}")
        return super().restore(image, setting)


@METHODS.register("vdsr")
class VDSRMethod(LumaSRMethod):
    """VDSR as a method; hyper-parameters ``depth`` and ``features``. The setting (scale) selects nothing."""

    name = "vdsr"
    official: ClassVar[dict[int | None, RemoteFile]] = {None: PORT_FILE}

    def __init__(self, depth: int = 20, features: int = 64) -> None:
        super().__init__(depth=depth, features=features)

    def build_network(self, setting: int) -> VDSR:
        check_scale(setting, self.settings)
        return VDSR(**self.hparams)

    def import_official(self, path: Path, setting: int) -> OrderedDict[str, torch.Tensor]:
        """Read the port's ``model_epoch_50.pth`` (see the module docstring for the key mapping)."""
        check_scale(setting, self.settings)
        return read_port(Path(path), self.hparams["depth"])
