"""Learned methods: inference networks with BatchNorm folded, and checkpoints that bring their architecture."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.dncnn import conv_stack
from models.n3net import N3Net
from pipeline.methods import METHODS, fold_batchnorm
from pipeline.train import save_model


def _with_statistics(module: nn.Module) -> nn.Module:
    """Random running statistics and affine parameters in every BatchNorm2d, then eval mode."""
    torch.manual_seed(0)
    with torch.no_grad():
        for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return module.double().eval()


def test_folding_keeps_the_output_and_removes_every_batchnorm_after_a_conv() -> None:
    torch.manual_seed(1)
    network = _with_statistics(N3Net(depth=3, features=8, k=2, window=5, patch_size=4, stride=3, embed_features=4))
    x = torch.rand(1, 1, 40, 36, dtype=torch.float64)
    with torch.no_grad():
        expected = network(x)
        folded = fold_batchnorm(network)
        assert folded is network
        torch.testing.assert_close(folded(x), expected, rtol=0, atol=1e-10)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in network.modules())
    assert any(isinstance(m, nn.BatchNorm1d) for m in network.modules())  # the distance BN has no conv to join


def test_training_mode_batchnorm_is_left_alone() -> None:
    stack = conv_stack(2, 4, 2, 3, head_bn=True).train()
    fold_batchnorm(stack)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in stack.modules()) == 2


def test_a_checkpoint_from_before_an_option_existed_loads_with_its_default(tmp_path) -> None:
    network = METHODS.get("dncnn-s")(depth=5).build_network(25)
    save_model(network, tmp_path, {"method": "dncnn-s", "hparams": {"depth": 5}})  # no noise_maps yet
    method = METHODS.get("dncnn-s")()
    method.load_file(tmp_path / "model.pt", 25)
    assert method.hparams["depth"] == 5 and method.hparams["noise_maps"] is False
    assert method.restore(np.zeros((16, 16), np.float32), 25).shape == (16, 16)
