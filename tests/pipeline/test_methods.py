"""Learned methods' inference networks: BatchNorm folded into the convs computes the same function."""

from __future__ import annotations

import torch
from torch import nn

from models.dncnn import conv_stack
from models.n3net import N3Net
from pipeline.methods import fold_batchnorm


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
