"""The interface every restoration method implements, classical or learned.

Images are ``numpy`` arrays of float32 in [0, 1] (the degraded input may leave that range: Gaussian noise is
not clipped), shaped ``H×W`` (gray) or ``H×W×3`` (RGB). A *setting* is the task's knob: σ on the 0–255 scale
for denoising, the scale factor for super-resolution.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval

from pipeline.data.download import RemoteFile
from pipeline.errors import UserError
from pipeline.registry import Registry


class SettingError(UserError, ValueError):
    """A setting (σ, scale) that the method has no model or no checkpoint for."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file that cannot be read, or whose weights do not fit the method."""


class Method:
    """A restoration method: ``restore(degraded, setting) -> estimate of the clean image``."""

    name: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ()
    trainable: ClassVar[bool] = False
    #: how many images evaluation hands to :meth:`restore_batch` at once
    batch_size: ClassVar[int] = 1

    def __init__(self, **hparams: Any) -> None:
        self.hparams = dict(hparams)

    def restore(self, image: np.ndarray, setting: int) -> np.ndarray:
        raise NotImplementedError

    def supports(self, task: str) -> bool:
        """Whether the method runs ``task`` (one of its ``tasks``)."""
        return task in self.tasks

    def restore_batch(self, images: Sequence[np.ndarray], setting: int) -> list[np.ndarray]:
        """Restore several images; methods override this where batching or a process pool helps."""
        return [self.restore(image, setting) for image in images]


class LearnedMethod(Method):
    """A method backed by a ``torch.nn.Module`` whose weights come from training or an official checkpoint."""

    trainable: ClassVar[bool] = True
    #: official checkpoints by setting (``None``: one file for every setting, e.g. a blind or multi-scale model)
    official: ClassVar[Mapping[int | None, RemoteFile]] = {}

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.network: torch.nn.Module | None = None
        self.device = torch.device("cpu")

    def build_network(self, setting: int) -> torch.nn.Module:
        """A freshly initialised network for ``setting`` with this method's hyper-parameters."""
        raise NotImplementedError

    def official_file(self, setting: int) -> RemoteFile:
        """The published checkpoint for ``setting``."""
        remote = self.official.get(setting) or self.official.get(None)
        if remote is None:
            published = ", ".join(str(key) for key in self.official) or "none"
            raise SettingError(
                f"{self.name} has no official checkpoint for setting {setting} (published: {published}); train it "
                "with the paper profile and pass --checkpoint PATH"
            )
        return remote

    def import_official(self, path: Path, setting: int) -> Mapping[str, torch.Tensor]:
        """Convert an official checkpoint file into a state dict of :meth:`build_network`'s module."""
        raise NotImplementedError(f"{self.name} has no official checkpoint importer")

    def load(self, state_dict: Mapping[str, torch.Tensor], setting: int, device: str = "cpu") -> None:
        """Build the network for ``setting``, load ``state_dict`` strictly and make it an inference network (eval
        mode, BatchNorm folded into the convs before it: the same function in fewer passes)."""
        network = self.build_network(setting)
        network.load_state_dict(state_dict, strict=True)
        self.device = torch.device(device)
        self.network = fold_batchnorm(network.to(self.device).eval())

    def load_file(self, path: Path, setting: int, device: str = "cpu") -> None:
        """Load a checkpoint written by n3bench (``{"state_dict": ..., "method": ..., "hparams": ...}``), refusing
        pickled code. A checkpoint of this very method brings its own hyper-parameters (architecture)."""
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise CheckpointError(
                f"cannot read checkpoint {path}: it is not a PyTorch file of tensors (n3bench loads checkpoints with "
                "weights_only=True and refuses anything that would run pickled code)"
            ) from None
        except (OSError, RuntimeError, EOFError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), Mapping):
            raise CheckpointError(f"{path} is not a checkpoint written by n3bench (it has no state_dict)")
        if payload.get("method") == self.name and isinstance(payload.get("hparams"), dict):
            # the class's defaults fill in what the file does not say, e.g. options newer than the file
            self.hparams = {**type(self)().hparams, **payload["hparams"]}
        try:
            self.load(payload["state_dict"], setting, device)
        except RuntimeError as error:
            trained = payload.get("method", "an unknown method")
            raise CheckpointError(
                f"{path} (trained as {trained}, hparams {payload.get('hparams')}) does not fit {self.name} with "
                f"hparams {self.hparams}: {str(error).splitlines()[0]}"
            ) from None

    def to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """``H×W[×C]`` array → ``1×C×H×W`` float tensor on the method's device."""
        array = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None].to(self.device)

    @staticmethod
    def to_image(tensor: torch.Tensor) -> np.ndarray:
        """``1×C×H×W`` tensor → ``H×W`` (C = 1) or ``H×W×C`` float32 array."""
        array = tensor[0].detach().cpu().numpy().astype(np.float32)
        return array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)

    @property
    def noise_maps(self) -> bool:
        """Whether the network also takes the Poisson-Gaussian levels (a, b) as two constant input planes."""
        return bool(self.hparams.get("noise_maps", False))

    def supports(self, task: str) -> bool:
        """A noise-map network is a real-noise denoiser (trained on Poisson-Gaussian noise) and nothing else."""
        return task == "realnoise" if self.noise_maps else super().supports(task)

    def network_input(
        self, image: np.ndarray, setting: int, levels: tuple[float, float] | None = None
    ) -> torch.Tensor:
        """The network's input for ``image``: the image itself, or with :attr:`noise_maps` the gray image and its
        (a, b) planes: ``levels`` if given, else :func:`~pipeline.protocols.pgnoise.noise_levels` (estimated for
        setting 0)."""
        if not self.noise_maps:
            return self.to_tensor(image)
        from pipeline.protocols.pgnoise import noise_levels, with_noise_maps

        planes = with_noise_maps(image, *(levels or noise_levels(image, setting)))
        return torch.from_numpy(planes)[None].to(self.device)

    def restore_with_levels(self, image: np.ndarray, a: float, b: float) -> np.ndarray:
        """A gray image through a noise-map network, given its Poisson-Gaussian levels (e.g. DND's ``nlf``)."""
        if not self.noise_maps or self.network is None:
            raise RuntimeError(f"{self.name}: restore_with_levels needs a loaded noise-map network")
        with torch.inference_mode():
            return self.to_image(self.network(self.network_input(image, 0, (a, b))))

    def restore(self, image: np.ndarray, setting: int) -> np.ndarray:
        """The network's output; a gray network restores a colour image channel by channel (a noise-map network
        with each channel's own levels)."""
        if self.network is None:
            raise RuntimeError(f"{self.name}: load weights before restoring (load or load_file)")
        if image.ndim == 3 and _input_channels(self.network) == 1 + 2 * self.noise_maps:
            return np.stack([self.restore(image[..., channel], setting) for channel in range(image.shape[2])], -1)
        with torch.inference_mode():
            return self.to_image(self.network(self.network_input(image, setting)))


@torch.no_grad()
def fold_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """For inference: fold each eval-mode BatchNorm2d that follows a Conv2d in an ``nn.Sequential`` into that
    conv (``torch.nn.utils.fusion.fuse_conv_bn_eval``), leaving ``nn.Identity`` in its place. Returns ``module``."""
    for sequential in [m for m in module.modules() if isinstance(m, torch.nn.Sequential)]:
        for index in range(1, len(sequential)):
            conv, bn = sequential[index - 1], sequential[index]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d) and not bn.training:
                sequential[index - 1], sequential[index] = fuse_conv_bn_eval(conv, bn), torch.nn.Identity()
    return module


def _input_channels(network: torch.nn.Module) -> int | None:
    """The input channels of the network's first convolution (``None`` without one)."""
    first = next((module for module in network.modules() if isinstance(module, torch.nn.Conv2d)), None)
    return first.in_channels if first is not None else None


METHODS: Registry[type[Method]] = Registry("method")
