"""N³Net-SR: VDSR stages around N³ blocks, the channel plan, the identity path and the SR-task input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.n3net_sr import N3NetSR, N3NetSRMethod
from pipeline.evaluate import SuperResolutionTask
from pipeline.methods import METHODS

SMALL = {"stage_depth": 2, "features": 8, "k": 2, "embed_features": 8}


def _network(**overrides: object) -> N3NetSR:
    torch.manual_seed(0)
    return N3NetSR(**{**SMALL, **overrides})


def test_registered_for_sr_without_official_weights() -> None:
    method = METHODS.get("n3net-sr")(**SMALL)
    assert isinstance(method, N3NetSRMethod)
    assert method.tasks == ("sr",) and method.settings == (2, 3, 4)
    with pytest.raises(ValueError, match="no official checkpoint"):
        method.official_file(2)


def test_channel_plan() -> None:
    network = _network(stages=4, interm_channels=4)
    plan = [(stage.layers[0].in_channels, stage.layers[-1].out_channels) for stage in network.stages]
    assert plan == [(1, 4), (12, 4), (12, 4), (12, 1)]
    assert len(network.blocks) == 3 and all(block.out_channels == 12 for block in network.blocks)


def test_needs_two_stages() -> None:
    with pytest.raises(ValueError, match="at least 2 stages"):
        N3NetSR(stages=1)


def test_identity_when_every_stage_outputs_zero() -> None:
    network = _network().eval()
    with torch.no_grad():
        for stage in network.stages:
            stage.layers[-1].weight.zero_()
        x = torch.rand(1, 1, 80, 84)
        torch.testing.assert_close(network(x), x)


def test_trains_with_gradients_to_every_stage() -> None:
    network = _network().train()
    network(torch.rand(2, 1, 80, 80)).square().mean().backward()
    assert all(stage.layers[0].weight.grad.abs().sum() > 0 for stage in network.stages)


def test_restore_takes_the_sr_task_input_and_refuses_tiny_images() -> None:
    method = N3NetSRMethod(**SMALL)
    method.load(_network().state_dict(), 3)
    task = SuperResolutionTask({})
    sample = task.degrade(np.random.default_rng(0).integers(0, 256, (84, 90, 3), dtype=np.uint8), "r", "x", 3)
    estimate = method.restore(sample.degraded, 3)
    assert estimate.dtype == np.float32 and estimate.shape == sample.reference.shape == (84, 90)
    with pytest.raises(ValueError, match="at least 80 px"):
        method.restore(np.zeros((40, 90), np.float32), 3)
    with pytest.raises(ValueError, match=r"one of \(2, 3, 4\)"):
        method.restore(sample.degraded, 5)
