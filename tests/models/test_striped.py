"""Striped recomputation of conv stacks: the same values, gradients and BatchNorm statistics as plain autograd."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from models import striped as striped_module
from models.dncnn import conv_stack
from models.striped import striped


def _stack(train: bool) -> nn.Sequential:
    """A float64 conv-BN-ReLU stack (the N³ embedding-net layout) with non-trivial BatchNorm state."""
    torch.manual_seed(0)
    stack = conv_stack(3, 6, 4, 3, head_bn=True).double()
    with torch.no_grad():
        for module in stack.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return stack.train(train)


def _max_difference(first: list[torch.Tensor], second: list[torch.Tensor]) -> float:
    return max((a - b).abs().max().item() for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("train", [True, False], ids=["batch-stats", "running-stats"])
@pytest.mark.parametrize("stripe_pixels", [1, 40, 1 << 16], ids=["one-row", "several-rows", "whole"])
@pytest.mark.parametrize("shape", [(2, 3, 13, 7), (1, 3, 5, 11)])
def test_matches_plain_autograd(
    monkeypatch: pytest.MonkeyPatch, train: bool, stripe_pixels: int, shape: tuple[int, ...]
) -> None:
    monkeypatch.setattr(striped_module, "STRIPE_PIXELS", stripe_pixels)
    stack = _stack(train)
    reference = copy.deepcopy(stack)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    x_reference = x.detach().clone().requires_grad_()
    grad = torch.randn(shape[0], 4, *shape[2:], dtype=torch.float64)

    out = striped(stack, x)
    out.backward(grad)
    expected = reference(x_reference)
    expected.backward(grad)

    assert _max_difference([out, x.grad], [expected, x_reference.grad]) < 1e-12
    assert _max_difference([p.grad for p in stack.parameters()], [p.grad for p in reference.parameters()]) < 1e-12
    assert _max_difference(list(stack.buffers()), list(reference.buffers())) == 0


def test_frozen_input_and_parameters_get_no_gradient() -> None:
    stack = _stack(True)
    stack[0].weight.requires_grad_(False)
    x = torch.randn(1, 3, 9, 9, dtype=torch.float64)
    striped(stack, x).sum().backward()
    assert stack[0].weight.grad is None and x.grad is None
    assert stack[3].weight.grad is not None


def test_refuses_layers_it_cannot_stripe() -> None:
    with pytest.raises(TypeError, match="unsupported layer"):
        striped(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Tanh()), torch.zeros(1, 1, 4, 4))
    with pytest.raises(TypeError, match="same"):
        striped(nn.Sequential(nn.Conv2d(1, 1, 3, padding=0)), torch.zeros(1, 1, 4, 4))
