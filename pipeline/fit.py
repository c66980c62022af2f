"""The fit step of a cell: train a learned method, import its official checkpoint, or (classical methods)
record the resolved settings, so that evaluation is the same for every method."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline import paths
from pipeline.config import Params, ParamsError
from pipeline.data.download import fetch, mirror_root
from pipeline.data.images import atomic_write_bytes, read_image, to_float
from pipeline.data.prepare import load_manifest
from pipeline.evaluate import TASKS, Sample, Task, cell_key
from pipeline.methods import METHODS, LearnedMethod, Method
from pipeline.protocols.pgnoise import sample_training_batch
from pipeline.train import MANIFEST_FILE, MODEL_FILE, Schedule, finish, save_model, train

#: test images scored during training
VALIDATION_IMAGES = 2


def make_method(name: str, params: Params, task: str, official: bool = False) -> Method:
    """Instantiate a registered method with its params block (the global one for ``official`` weights); it must
    support ``task``."""
    import models  # noqa: F401  (importing the package registers every method)

    hparams = params.method(name, profile_override=not official)
    try:
        method = METHODS.get(params.method_class_name(name))(**hparams)
    except TypeError as error:
        raise ParamsError(f"params.yaml: methods.{name} = {hparams} does not fit the method: {error}") from None
    method.name = name  # an ablation variant reports under its own name
    if not method.supports(task):
        raise ParamsError(f"method {name!r} does not support task {task!r} "
                         f"(it supports {', '.join(name for name in TASKS if method.supports(name))})")
    return method


def load_dataset(name: str, color: str) -> list[np.ndarray]:
    """All images of a prepared dataset as float32 arrays (gray or the luma used by SR)."""
    from pipeline.protocols.color import rgb2gray_pil, rgb2ycbcr

    folder = paths.prepared(name)
    images = []
    for image_id in load_manifest(folder, name)["image"]:
        array = read_image(folder / f"{image_id}.png")
        if array.ndim == 3:
            array = rgb2gray_pil(array) if color == "gray" else np.round(rgb2ycbcr(array)[..., 0] * 255)
        images.append(to_float(array.astype(np.uint8)) if color == "gray" else array.astype(np.float32) / 255)
    return images


def random_patches(images: Sequence[np.ndarray], count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``count × size × size`` random crops with random flips and 90° rotations."""
    patches = []
    for _ in range(count):
        image = images[rng.integers(len(images))]
        top = rng.integers(image.shape[0] - size + 1)
        left = rng.integers(image.shape[1] - size + 1)
        patch = np.rot90(image[top : top + size, left : left + size], k=int(rng.integers(4)))
        patches.append(patch[::-1] if rng.integers(2) else patch)
    return np.ascontiguousarray(np.stack(patches), dtype=np.float32)


def _batch_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``N×H×W`` (one channel) or ``N×C×H×W`` array → ``N×C×H×W`` float tensor on ``device``."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return (tensor[:, None] if tensor.ndim == 3 else tensor).to(device)


@dataclass
class RestorationTraining:
    """Patch-based training of an image-to-image method on (degraded, clean) pairs built by the task.

    ``validation`` holds fixed test samples (degraded once), scored with the task's metric during training.
    """

    method: LearnedMethod
    task: Task
    setting: int
    images: list[np.ndarray]
    validation: list[Sample]
    batch_size: int
    patch_size: int
    sigma_range: tuple[int, int] | None = None

    def build(self) -> nn.Module:
        return self.method.build_network(self.setting)

    def batch(self, rng: np.random.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        clean = random_patches(self.images, self.batch_size, self.patch_size, rng)
        if self.task.name == "realnoise":
            return self._poisson_gaussian(clean, rng, device)
        if self.task.name == "denoise":
            sigma = self.setting if self.sigma_range is None else rng.uniform(*self.sigma_range, (len(clean), 1, 1))
            degraded = clean + rng.standard_normal(clean.shape).astype(np.float32) * np.float32(sigma) / 255
        else:
            scales = [int(rng.choice(self.method.hparams.get("train_scales", [self.setting]))) for _ in clean]
            pairs = zip(clean, scales, strict=True)
            degraded = np.stack([self.task.degrade_luma(patch, scale) for patch, scale in pairs])
        return _batch_tensor(degraded, device), _batch_tensor(clean, device)

    def _poisson_gaussian(
        self, clean: np.ndarray, rng: np.random.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Spec §g: linearised patches, per-patch (a, b), clipped noisy input (with the a, b planes for a
        noise-map network); the target is the linearised clean patch."""
        batch = sample_training_batch(clean, rng)
        inputs = batch.inputs if self.method.noise_maps else batch.inputs[:, :1]
        return _batch_tensor(inputs, device), _batch_tensor(batch.targets, device)

    def loss(self, network: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        degraded, clean = batch
        return 0.5 * (network(degraded) - clean).pow(2).sum() / len(clean) * (1600 / self.patch_size**2)

    def validate(self, network: nn.Module) -> dict[str, float]:
        self.method.network, self.method.device = network, next(network.parameters()).device
        scores = [self.task.score(self.method.restore(sample.degraded, self.setting), sample, self.setting)
                  for sample in self.validation]
        return {"val_psnr": float(np.mean([psnr for psnr, _ in scores]))} if scores else {}


def _schedule(fit: dict[str, Any], seed: int) -> Schedule:
    keys = ("steps", "lr", "lr_final", "weight_decay", "checkpoint_every", "validate_every", "bn_recalibration_steps")
    return Schedule(**{key: fit[key] for key in keys if key in fit}, seed=seed)


def _validation(task: Task, setting: int, testset: str, color: str) -> list[Sample]:
    """The first two test images of ``testset`` as fixed validation samples (the stored pairs of real noise)."""
    if task.name == "realnoise":
        return list(task.samples(testset, paths.prepared(testset), setting, VALIDATION_IMAGES))
    images = load_dataset(testset, color)[:VALIDATION_IMAGES]
    return [task.degrade((image * 255).round().astype(np.uint8), "validation", f"val{index}", setting)
            for index, image in enumerate(images)]


def _training(method: LearnedMethod, task: Task, setting: int, params: Params) -> RestorationTraining:
    fit, section = params.task_fit(task.name), params.task(task.name)
    color = "y" if task.name == "sr" else "gray"
    if not section.get("trainsets"):
        raise ParamsError(f"params.yaml: profiles.{params.profile}.{task.name}.trainsets is empty; nothing to train on")
    images = [image for name in section["trainsets"] for image in load_dataset(name, color)]
    testsets = section.get("testsets")
    validation = _validation(task, setting, testsets[0], color) if testsets else []
    sigma_range = tuple(fit.get("sigma_range", (0, 55))) if method.hparams.get("blind", False) else None
    return RestorationTraining(method, task, setting, images, validation, fit.get("batch_size", 16),
                               fit.get("patch_size", 80), sigma_range)


def fit_cell(params: Params, task_name: str, method_name: str, setting: int, out: Path) -> dict[str, Any]:
    """Produce ``out`` for one cell; returns the metadata written beside the weights."""
    fit = params.task_fit(task_name)
    method = make_method(method_name, params, task_name, official=fit.get("mode") == "official")
    metadata = {"method": method_name, "task": task_name, "setting": setting, "profile": params.profile,
                "hparams": method.hparams}
    out.mkdir(parents=True, exist_ok=True)
    if not isinstance(method, LearnedMethod):
        metadata["source"] = "classical"
        atomic_write_bytes(out / MANIFEST_FILE, json.dumps(metadata, indent=2).encode())
        return metadata
    if fit["mode"] == "official":
        metadata["source"] = import_official(method, setting, params, out, metadata)
        return metadata
    task = TASKS[task_name](params.raw.get(task_name, {}).get("protocol", {}), params.raw.get("seed", 0))
    config = {**metadata, "fit": fit, "seed": params.raw.get("seed", 0), "device": params.device}
    scratch = paths.scratch(params.profile, "fit", f"{task_name}-{method_name}-{setting}-{cell_key(config)}")
    network = train(_training(method, task, setting, params), _schedule(fit, config["seed"]), scratch,
                    torch.device(params.device))
    metadata["source"] = "trained"
    finish(scratch, network, out, metadata)
    return metadata


def import_official(method: LearnedMethod, setting: int, params: Params, out: Path, metadata: dict[str, Any]) -> str:
    """Fetch the method's published checkpoint (checksummed), convert it and save it as ``out/model.pt``."""
    remote, network = method.official_file(setting), method.build_network(setting)  # before any download
    local = fetch(remote, paths.raw() / "pretrained" / Path(remote.mirror_path or remote.url).name,
                  dataset=f"{method.name} official weights", mirror=mirror_root(params.mirror))
    network.load_state_dict(method.import_official(local, setting), strict=True)
    save_model(network, out, {**metadata, "source": remote.url})
    return remote.url


def official_weights(params: Params, task: str, method_name: str, setting: int) -> Path:
    """The converted official checkpoint of a cell (converted once, then reused)."""
    method = make_method(method_name, params, task, official=True)
    if not isinstance(method, LearnedMethod):
        raise ParamsError(f"method {method_name!r} is classical: it has no weights")
    out = paths.official_dir(task, method_name, setting)
    if not (out / MODEL_FILE).exists():
        out.mkdir(parents=True, exist_ok=True)
        metadata = {"method": method_name, "task": task, "setting": setting, "hparams": method.hparams}
        import_official(method, setting, params, out, metadata)
    return out / MODEL_FILE


def load_fitted(method: Method, weights: Path, setting: int, device: str = "cpu") -> Method:
    """Give a learned method its checkpoint (classical methods need none)."""
    if isinstance(method, LearnedMethod):
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing: run the fit stage of this cell first (dvc repro)")
        method.load_file(weights, setting, device)
    return method
