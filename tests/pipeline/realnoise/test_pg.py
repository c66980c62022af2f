"""Poisson-Gaussian models in the pipeline: noise-map inputs, training batches, the sample_pg stand-in set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.dncnn import DnCNNS
from pipeline.data.catalog import DATASETS
from pipeline.data.prepare import prepare
from pipeline.fit import RestorationTraining
from pipeline.protocols.pgnoise import add_poisson_gaussian_noise, estimate_noise_levels
from pipeline.realnoise.cc15 import psnr_rgb
from pipeline.realnoise.task import RealNoiseTask


class _PickPlane(nn.Module):
    """A 1×1 conv that outputs one of its three input planes."""

    def __init__(self, plane: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, plane] = 1.0
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _noise_map_method(network: nn.Module) -> DnCNNS:
    method = DnCNNS(depth=3, features=4, noise_maps=True)
    method.network = network.eval()
    return method


def test_a_noise_map_method_is_a_real_noise_method_only() -> None:
    assert DnCNNS(noise_maps=True).supports("realnoise") and not DnCNNS(noise_maps=True).supports("denoise")
    assert DnCNNS().supports("denoise") and not DnCNNS().supports("realnoise")


def test_colour_image_runs_channel_by_channel_with_each_channels_levels() -> None:
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(0.2, 0.8, 64, dtype=np.float32), (64, 1))[..., None].repeat(3, axis=-1)
    image = np.stack([add_poisson_gaussian_noise(clean[..., c], 0.0, b, rng) for c, b in enumerate((1e-4, 1e-3, 4e-3))],
                     axis=-1)
    b_planes = _noise_map_method(_PickPlane(2)).restore(image, 0)
    expected = [np.float32(estimate_noise_levels(image[..., c])[1]) for c in range(3)]
    assert b_planes.shape == image.shape
    for channel in range(3):
        assert np.all(b_planes[..., channel] == expected[channel])
    assert expected[0] < expected[1] < expected[2]
    fixed = _noise_map_method(_PickPlane(2)).restore(image, 25)
    np.testing.assert_allclose(fixed, (25 / 255) ** 2, rtol=1e-6)
    np.testing.assert_array_equal(_noise_map_method(_PickPlane(0)).restore(image, 0), image)


def test_training_batches_are_poisson_gaussian_with_noise_maps() -> None:
    images = [np.random.default_rng(1).uniform(size=(48, 48)).astype(np.float32)]
    task = RealNoiseTask({})

    def batch(method: DnCNNS, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        training = RestorationTraining(method, task, 0, images, [], batch_size=4, patch_size=16)
        return training.batch(np.random.default_rng(seed), torch.device("cpu"))

    inputs, targets = batch(DnCNNS(noise_maps=True), 2)
    assert inputs.shape == (4, 3, 16, 16) and targets.shape == (4, 1, 16, 16)
    for plane in (1, 2):  # one (a, b) per patch, constant over it, different between patches
        per_patch = inputs[:, plane].flatten(1)
        assert torch.all(per_patch == per_patch[:, :1]) and len(torch.unique(per_patch[:, 0])) == 4
    assert float(inputs[:, 0].min()) >= 0.0 and float(inputs[:, 0].max()) <= 1.0
    assert float(targets.max()) <= 1.0 and not torch.equal(inputs[:, :1], targets)
    again, _ = batch(DnCNNS(noise_maps=True), 2)
    assert torch.equal(inputs, again)  # a pure function of the step's generator (resumable training)
    plain, _ = batch(DnCNNS(), 2)
    assert torch.equal(plain, inputs[:, :1])


def test_sample_pg_is_a_set_of_noisy_clean_pairs(tmp_path: Path) -> None:
    prepare(DATASETS.get("sample_pg"), tmp_path / "sample_pg", raw=tmp_path / "raw")
    samples = list(RealNoiseTask({}).samples("sample_pg", tmp_path / "sample_pg", 0, None))
    assert [sample.image for sample in samples] == ["astronaut", "chelsea", "coffee"]
    for sample in samples:
        assert sample.degraded.shape == sample.reference.shape == (96, 96, 3)
        assert 15.0 < psnr_rgb(sample.degraded, sample.reference, data_range=1.0) < 40.0
