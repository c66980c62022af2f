"""N³Net for Gaussian denoising (Plötz & Roth, NeurIPS 2018): DnCNN stages joined by N³ blocks.

``stage₁ → N3₁ → stage₂ → N3₂ → stage₃`` with the paper's defaults: 3 stages of 6 conv layers (64 features, BN),
8 channels between a stage and the next N³ block, k = 7, so every N³ block maps 8 → 64 channels. Each stage adds
its input's first ``min(C_in, C_out)`` channels to its output; there is no global skip, the network outputs the
clean estimate directly.

Official weights: ``visinf/n3net`` ``results_gaussian_denoising/pretrained_sigma{25,50,70}/checkpoint/051_ckpt.t7``,
legacy torch pickles of ``{'net': state_dict, 'epoch': 51}`` read with ``weights_only=True``. The key mapping is
:data:`OFFICIAL_KEYS` (documented in docs/models.md).
"""

from __future__ import annotations

import inspect
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models.dncnn import conv_stack, init_dncnn
from models.n3block import N3Block
from pipeline.config import ParamsError
from pipeline.data.download import RemoteFile
from pipeline.methods import METHODS, LearnedMethod


class DnCNNStage(nn.Module):
    """A DnCNN layer stack (conv + ReLU, ``depth − 2`` × [conv, BN, ReLU], conv) plus an identity path on the
    first ``min(C_in, C_out, residual_channels)`` channels (``residual_channels`` None: no further limit)."""

    def __init__(
        self, in_channels: int, out_channels: int, depth: int = 6, features: int = 64,
        residual_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.layers = conv_stack(in_channels, features, out_channels, depth, batchnorm=True)
        self.residual_channels = residual_channels
        init_dncnn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        shared = min(x.shape[1], out.shape[1], self.residual_channels or x.shape[1])
        return out + F.pad(x[:, :shared], (0, 0, 0, 0, 0, out.shape[1] - shared))


class N3Net(nn.Module):
    """``stages`` DnCNN stages with an N³ block between each pair (none when ``k = 0``).

    ``depth``/``features``: layers and width of each stage; ``interm_channels``: the channels a stage hands to
    the next N³ block; ``noise_maps``: the input carries two more planes, the Poisson-Gaussian levels a and b
    (the real-noise variant, spec §g), which the first stage's identity path leaves out. The remaining arguments
    configure every :class:`~models.n3block.N3Block`.
    """

    def __init__(
        self,
        stages: int = 3,
        depth: int = 6,
        features: int = 64,
        interm_channels: int = 8,
        k: int = 7,
        rule: str = "continuous",
        embedding: str = "learned",
        temperature: str = "external",
        distance_bn: bool = True,
        temp_bias: float = 0.1,
        embed_channels: int = 8,
        embed_features: int = 64,
        embed_depth: int = 3,
        patch_size: int = 10,
        stride: int = 5,
        window: int = 15,
        tile: int = 8,
        noise_maps: bool = False,
        channels: int = 1,
    ) -> None:
        super().__init__()
        if stages < 1 or k < 0:
            raise ValueError(f"N3Net needs stages >= 1 and k >= 0, got stages = {stages}, k = {k}")
        block_args = {
            "in_channels": interm_channels, "k": k, "rule": rule, "embedding": embedding,
            "temperature": temperature, "distance_bn": distance_bn, "temp_bias": temp_bias,
            "embed_channels": embed_channels, "embed_features": embed_features, "embed_depth": embed_depth,
            "patch_size": patch_size, "stride": stride, "window": window, "tile": tile,
        }  # fmt: skip
        inputs = [channels + 2 * noise_maps] + [(k + 1) * interm_channels] * (stages - 1)
        outputs = [interm_channels] * (stages - 1) + [channels]
        self.stages = nn.ModuleList(
            DnCNNStage(width_in, width_out, depth, features, channels if index == 0 else None)
            for index, (width_in, width_out) in enumerate(zip(inputs, outputs, strict=True))
        )
        self.n3blocks = nn.ModuleList(N3Block(**block_args) for _ in range(stages - 1) if k > 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index < len(self.n3blocks):
                x = self.n3blocks[index](x)
        return x


#: official key pattern → n3bench key template, None: dropped. In templates ``{m}`` is the official ``layer1``
#: index + 2 (our stacks start with conv1 and its ReLU) and ``{last}`` the index of a stage's last conv.
OFFICIAL_KEYS: tuple[tuple[str, str | None], ...] = (
    (r"blocks\.(?P<s>\d+)\.conv1\.(?P<p>weight|bias)", "stages.{s}.layers.0.{p}"),
    (r"blocks\.(?P<s>\d+)\.bn1\.(?P<p>\w+)", None),  # built but never applied by the official forward pass
    (r"blocks\.(?P<s>\d+)\.layer1\.(?P<m>\d+)\.(?P<p>\w+)", "stages.{s}.layers.{m}.{p}"),
    (r"blocks\.(?P<s>\d+)\.conv2\.(?P<p>weight|bias)", "stages.{s}.layers.{last}.{p}"),
    (r"nls\.(?P<j>\d+)\.embedcnn\.(?P<rest>.+)", "n3blocks.{j}.embedding.{rest}"),
    (r"nls\.(?P<j>\d+)\.tempcnn\.(?P<rest>.+)", "n3blocks.{j}.temperature_net.{rest}"),
    (r"nls\.(?P<j>\d+)\.n3aggregation\.aggregation\.nnn\.bn\.(?P<p>\w+)", "n3blocks.{j}.distance_bn.{p}"),
)


def official_key(key: str, last: int) -> str | None:
    """The n3bench name of an official checkpoint key (None for the unused ``bn1``); ValueError if unknown."""
    for pattern, template in OFFICIAL_KEYS:
        match = re.fullmatch(pattern, key)
        if match:
            if template is None:
                return None
            groups = match.groupdict()
            if "m" in groups:
                groups["m"] = str(int(groups["m"]) + 2)
            return template.format(last=last, **groups)
    raise ValueError(f"official N3Net key {key!r} matches no known pattern")


def convert_official(state: Mapping[str, torch.Tensor], network: N3Net) -> OrderedDict[str, torch.Tensor]:
    """An official ``net`` state dict renamed for ``network``; the key sets must match exactly.

    The official files predate ``num_batches_tracked``; it is added as 0, as torch does for such old files.
    """
    last = len(network.stages[0].layers) - 1
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = official_key(key, last)
        if name is not None:
            renamed[name] = value
    expected = network.state_dict()
    for key, value in expected.items():
        if key.endswith("num_batches_tracked"):
            renamed[key] = torch.zeros_like(value)
    missing, unexpected = sorted(set(expected) - set(renamed)), sorted(set(renamed) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"official N3Net weights do not fit these hyper-parameters: missing {missing}, unexpected {unexpected}"
        )
    return OrderedDict((key, renamed[key]) for key in expected)


_N3NET_URL = "https://raw.githubusercontent.com/visinf/n3net/5d5883a374aab343ca4091d8a072e83629d53516/"
_N3NET_SHA256 = {
    25: "ca3ceea2f9f11cf685a14c0444aeeb3f0841b68deb665133b22c5e9eacf37ff4",
    50: "ffa39e15ba8a71992103cf2a223b1ef084cfca5c2e2b7724b277c88d2ec04a02",
    70: "640a2eee3d5c8675fbf89b78f91578f0a8cce5572132c740663a788ecb485d9c",
}
HPARAMS: dict[str, Any] = {
    name: parameter.default for name, parameter in inspect.signature(N3Net).parameters.items() if name != "channels"
}


@METHODS.register("n3net")
class N3NetMethod(LearnedMethod):
    """N³Net as a denoising method; hyper-parameters are :class:`N3Net`'s arguments (paper defaults)."""

    name = "n3net"
    tasks = ("denoise",)  # with ``noise_maps``: realnoise (LearnedMethod.supports)
    official: ClassVar[Mapping[int | None, RemoteFile]] = {
        sigma: RemoteFile(
            f"{_N3NET_URL}results_gaussian_denoising/pretrained_sigma{sigma}/checkpoint/051_ckpt.t7",
            sha256,
            2_856_732,
            f"pretrained/n3net_gaussian_sigma{sigma}.t7",
        )
        for sigma, sha256 in _N3NET_SHA256.items()
    }

    def __init__(self, **hparams: Any) -> None:
        unknown = sorted(set(hparams) - set(HPARAMS))
        if unknown:
            raise ParamsError(f"params.yaml: n3net has no hyper-parameters {unknown}; valid: {', '.join(HPARAMS)}")
        super().__init__(**{**HPARAMS, **hparams})

    def build_network(self, setting: int) -> N3Net:
        return N3Net(**self.hparams)

    def import_official(self, path: Path, setting: int) -> OrderedDict[str, torch.Tensor]:
        """The official ``.t7`` (``{'net': state_dict, 'epoch'}``), renamed for :meth:`build_network`."""
        checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("net"), Mapping):
            raise ValueError(f"{Path(path).name}: expected the official {{'net': state_dict, 'epoch'}} checkpoint")
        return convert_official(checkpoint["net"], self.build_network(setting))
