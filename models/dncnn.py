"""DnCNN (Zhang et al., TIP 2017) for Gaussian denoising, its layer stack, and official-weight importers.

The layer stack (:func:`conv_stack`) is also the building block of N3Net's stages and of the N³ block's
embedding and temperature nets. Layer indices follow one ``nn.Sequential``: ``conv, [BN,] ReLU, …, conv``.

Official checkpoints hold BatchNorm folded into the conv biases, so they load into ``batchnorm=False``:

- MatConvNet ``.mat`` (MATLAB v7.3 = HDF5, read with ``h5py``). ``net/layers`` lists ``conv`` and ``relu``
  layers only: 17 + 16 in the DnCNN-S files, 20 + 19 in the blind DnCNN-B file (``GD_Gray_Blind.mat``), so
  the blind model carries no separate BatchNorm layers either. A filter is stored as MATLAB ``kh×kw×in×out``,
  which h5py shows with reversed axes ``(out, in, kw, kh)`` and without the trailing singleton ``out = 1``.
- KAIR ``.pth``: a plain state dict ``model.{0,2,…}.{weight,bias}``, the same layer indices as ours.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import h5py
import numpy as np
import torch
from torch import nn

from pipeline.data.download import RemoteFile
from pipeline.methods import METHODS, LearnedMethod

BN_MOMENTUM = 0.001
_BN_GAMMA_MIN = 0.025


def conv_stack(
    in_channels: int,
    features: int,
    out_channels: int,
    depth: int,
    batchnorm: bool = True,
    head_bn: bool = False,
) -> nn.Sequential:
    """``depth`` 3×3 "same" convs with ReLUs between them.

    With ``batchnorm``, every conv but the last is followed by a BatchNorm (and has no bias), except the first
    one unless ``head_bn``: DnCNN starts with conv + ReLU, the N³ embedding nets with conv + BN + ReLU.
    """
    if depth < 2:
        raise ValueError(f"a conv stack needs depth >= 2, got {depth}")
    layers: list[nn.Module] = []
    for index in range(depth):
        last = index == depth - 1
        bn = batchnorm and not last and (index > 0 or head_bn)
        layers.append(
            nn.Conv2d(
                in_channels if index == 0 else features,
                out_channels if last else features,
                kernel_size=3,
                padding=1,
                bias=not bn,
            )
        )
        if bn:
            layers.append(nn.BatchNorm2d(features, momentum=BN_MOMENTUM))
        if not last:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


@torch.no_grad()
def init_batchnorm(module: nn.Module) -> None:
    """DnCNN-style init of each BatchNorm2d in ``module``: |γ| from N(0, 2/(9·C)) raised to ≥ 0.025, β = 0."""
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.weight.normal_(0.0, math.sqrt(2.0 / (9.0 * bn.num_features)))
            bn.weight.abs_().clamp_min_(_BN_GAMMA_MIN)
            bn.bias.zero_()


@torch.no_grad()
def init_dncnn(module: nn.Module) -> None:
    """DnCNN init: convs He-normal on fan-out, biases 0 (bias init not given by the sources); BN as above."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            if conv.bias is not None:
                conv.bias.zero_()
    init_batchnorm(module)


class DnCNN(nn.Module):
    """Residual denoiser: ``output = input − layers(input)`` (the layers predict the noise).

    With ``noise_maps`` the input has two more planes, the Poisson-Gaussian levels a and b (spec §g); the
    output and the residual keep the first ``in_channels``.
    """

    def __init__(
        self, in_channels: int = 1, depth: int = 17, features: int = 64, batchnorm: bool = True,
        noise_maps: bool = False,
    ) -> None:
        super().__init__()
        self.channels = in_channels
        self.layers = conv_stack(in_channels + 2 * noise_maps, features, in_channels, depth, batchnorm)
        init_dncnn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : self.channels] - self.layers(x)


def _matconvnet_filter(array: np.ndarray) -> torch.Tensor:
    """h5py view ``(out, in, kw, kh)`` (``out`` dropped when 1) → PyTorch ``(out, in, kh, kw)``."""
    if array.ndim == 3:
        array = array[None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 1, 3, 2)))


def _matconvnet_string(dataset: h5py.Dataset) -> str:
    return "".join(map(chr, np.asarray(dataset).ravel()))


def read_matconvnet(path: Path) -> OrderedDict[str, torch.Tensor]:
    """The convs of a MatConvNet DnCNN ``.mat`` as a state dict of ``DnCNN(batchnorm=False)``."""
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    with h5py.File(path, "r") as file:
        layers = file["net/layers"]
        for index, ref in enumerate(np.asarray(layers).ravel()):
            layer = file[ref]
            kind = _matconvnet_string(layer["type"])
            if kind == "relu":
                continue
            if kind != "conv":
                raise ValueError(f"{path.name}: layer {index} has type {kind!r}; expected only conv and relu")
            filters, biases = (np.asarray(file[r]) for r in np.asarray(layer["weights"]).ravel())
            state[f"layers.{index}.weight"] = _matconvnet_filter(filters)
            state[f"layers.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(biases.ravel()))
    return state


def read_kair(path: Path) -> OrderedDict[str, torch.Tensor]:
    """A KAIR DnCNN ``.pth`` (``model.N.*``) as a state dict of ``DnCNN(batchnorm=False)``."""
    source = torch.load(path, map_location="cpu", weights_only=True)
    if not all(key.startswith("model.") for key in source):
        raise ValueError(f"{path.name}: expected KAIR keys 'model.N.*', got {next(iter(source))!r}")
    return OrderedDict((f"layers.{key.removeprefix('model.')}", value) for key, value in source.items())


_READERS = {".mat": read_matconvnet, ".pth": read_kair}
_MATCONVNET_URL = "https://raw.githubusercontent.com/cszn/DnCNN/e93b27812d3ff523a3a79d19e5e50d233d7a8d0a/model/"


def _matconvnet(path: str, sha256: str, size: int, name: str) -> RemoteFile:
    """An official MatConvNet model of ``cszn/DnCNN`` @ e93b278, mirrored as ``pretrained/<name>``."""
    return RemoteFile(_MATCONVNET_URL + path, sha256, size, f"pretrained/{name}")


class _DnCNNMethod(LearnedMethod):
    """DnCNN as a method; ``depth``, ``features``, ``batchnorm`` and ``noise_maps`` are :class:`DnCNN`'s
    arguments.

    ``batchnorm`` defaults to False: the official weights have BatchNorm folded into the convs.
    """

    tasks = ("denoise",)
    default_depth: ClassVar[int]
    blind: ClassVar[bool]

    def __init__(
        self, depth: int | None = None, features: int = 64, batchnorm: bool = False, noise_maps: bool = False
    ) -> None:
        depth = self.default_depth if depth is None else depth
        super().__init__(depth=depth, features=features, batchnorm=batchnorm, noise_maps=noise_maps,
                         blind=self.blind)

    def build_network(self, setting: int) -> DnCNN:
        return DnCNN(
            depth=self.hparams["depth"],
            features=self.hparams["features"],
            batchnorm=self.hparams["batchnorm"],
            noise_maps=self.hparams["noise_maps"],
        )

    def import_official(self, path: Path, setting: int) -> OrderedDict[str, torch.Tensor]:
        """Read a MatConvNet ``.mat`` or KAIR ``.pth`` file (BN folded) for ``batchnorm=False``."""
        path = Path(path)
        if self.hparams["batchnorm"]:
            raise ValueError(f"{self.name}: official weights have BatchNorm folded; build with batchnorm=False")
        if path.suffix not in _READERS:
            raise ValueError(f"{path.name}: unknown DnCNN checkpoint format; expected one of {sorted(_READERS)}")
        return _READERS[path.suffix](path)


@METHODS.register("dncnn-s")
class DnCNNS(_DnCNNMethod):
    """DnCNN-S: 17 layers, one model per known σ (official: σ = 15, 25, 50, 70)."""

    name = "dncnn-s"
    default_depth = 17
    blind = False
    official: ClassVar[Mapping[int | None, RemoteFile]] = {
        15: _matconvnet(
            "specifics/sigma=15.mat",
            "657d5115fa05d371dbf0df1f0a931eff274dae29d08a9cc0824a28caf2460e21",
            2_292_856,
            "dncnn_s_sigma15_matconvnet.mat",
        ),
        25: _matconvnet(
            "specifics/sigma=25.mat",
            "5a5404c9e3ef14e353760e14b885439408a654618e14f13b2e97b99b9835020b",
            2_295_807,
            "dncnn_s_sigma25_matconvnet.mat",
        ),
        50: _matconvnet(
            "specifics/sigma=50.mat",
            "517dc0b55a8da2c129704ed7921b8557aac40cf3aae9f700dc41a9e25cad0983",
            2_299_259,
            "dncnn_s_sigma50_matconvnet.mat",
        ),
        70: _matconvnet(
            "specifics/sigma=70.mat",
            "545e251b5e66b456bf028bf395ae479d474ada5635aac2397708fe7763b1576f",
            2_297_845,
            "dncnn_s_sigma70_matconvnet.mat",
        ),
    }


@METHODS.register("dncnn-b")
class DnCNNB(_DnCNNMethod):
    """DnCNN-B: 20 layers, blind (one model for every σ; trained on σ ∈ [0, 55])."""

    name = "dncnn-b"
    tasks = ("denoise", "realnoise")  # colour real noise: channel by channel
    default_depth = 20
    blind = True
    official: ClassVar[Mapping[int | None, RemoteFile]] = {
        None: _matconvnet(
            "GD_Gray_Blind.mat",
            "37f76da0b71dd2b2789ce91848fe2f184ab486203c9af9ac1b98199b60ea02b0",
            2_766_582,
            "dncnn_b_gray_blind_matconvnet.mat",
        )
    }
