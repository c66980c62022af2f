"""Conv stacks whose backward pass recomputes their activations in horizontal stripes.

At 1024² px a 64-channel activation takes 256 MiB, and autograd keeps several per conv stack. :func:`striped`
runs an ``nn.Sequential`` of 3×3-style "same" convolutions, BatchNorm2d and ReLU as one autograd Function. Its
forward pass is the stack's own (running statistics update as usual) and keeps only the input and each
BatchNorm's per-channel mean μ and inverse standard deviation s. The backward pass recomputes the stack stripe
by stripe (each stripe with the extra rows its receptive field needs, zero padding only at the image border)
and differentiates that stripe's rows of the output, so it needs memory for a few stripes, not whole images.

BatchNorm with batch statistics couples all pixels: the exact gradient of its input z is the one at fixed
(μ, s) plus ``∂L/∂μ / N + ∂L/∂s · ∂s/∂z`` with ``∂s/∂z = −s³(z − μ)/N``. The adjoints ∂L/∂μ and ∂L/∂s of a
BatchNorm depend only on the layers after it, so one sweep per such BatchNorm, the last first, sums them over
the stripes with (μ, s) as leaves of each stripe's graph. Every later BatchNorm, whose adjoints are known by
then, adds ``gμ·Σz/N − gs·s³·Σ(z − μ)²/(2N)`` over the stripe's own rows to the stripe's loss: the gradient of
that term in z is exactly the coupling term. A last sweep yields the input and parameter gradients. The price
is compute: the backward pass runs the stack's forward once per sweep and its backward (in part) as often.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

STRIPE_PIXELS = 1 << 16
"""Pixels (batch × rows × width) per stripe: big enough for efficient convs, small enough to stay light."""


@dataclass
class _Norm:
    """A BatchNorm's normalisation: per-channel mean and inverse std, and (batch statistics only) their adjoints."""

    layer: nn.BatchNorm2d
    mean: torch.Tensor
    invstd: torch.Tensor
    batch: bool
    count: int
    grad_mean: torch.Tensor | None = None
    grad_invstd: torch.Tensor | None = None

    @classmethod
    def of(cls, layer: nn.BatchNorm2d, z: torch.Tensor) -> _Norm:
        batch = layer.training or layer.running_mean is None
        if batch:
            var, mean = torch.var_mean(z, dim=(0, 2, 3), correction=0)
        else:
            mean, var = layer.running_mean, layer.running_var
        return cls(layer, mean, torch.rsqrt(var + layer.eps), batch, z.numel() // z.shape[1])

    def apply(self, z: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor) -> torch.Tensor:
        scale = invstd if self.layer.weight is None else invstd * self.layer.weight
        y = (z - mean[:, None, None]) * scale[:, None, None]
        return y if self.layer.bias is None else y + self.layer.bias[:, None, None]

    def coupling(self, own: torch.Tensor) -> torch.Tensor:
        """The surrogate loss term whose gradient in ``own`` (this stripe's rows of z) is the batch coupling."""
        assert self.grad_mean is not None and self.grad_invstd is not None
        centred = own - self.mean[:, None, None]
        slope = self.grad_invstd * self.invstd**3 / 2
        return (self.grad_mean @ own.sum((0, 2, 3)) - slope @ centred.square().sum((0, 2, 3))) / self.count


def striped(stack: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``stack(x)`` with the same value and gradients, keeping only ``x`` and BatchNorm statistics for backward.

    ``stack`` may hold ``Conv2d`` (stride 1, odd square kernel, zero "same" padding, no dilation or groups),
    ``BatchNorm2d``, ``ReLU`` and ``Identity``; anything else raises TypeError. Not twice differentiable.
    """
    for layer in stack:
        _check_layer(layer)
    params = [p for p in stack.parameters() if p.requires_grad]
    return _Striped.apply(x, stack, *params)


def _check_layer(layer: nn.Module) -> None:
    if isinstance(layer, nn.Conv2d):
        (kh, kw), (ph, pw) = layer.kernel_size, layer.padding
        same = kh == kw and kh % 2 == 1 and ph == pw == kh // 2 and layer.padding_mode == "zeros"
        if not same or layer.stride != (1, 1) or layer.dilation != (1, 1) or layer.groups != 1:
            raise TypeError(f"striped(): only stride-1 odd square 'same' zero-padded convs, got {layer}")
    elif not isinstance(layer, (nn.BatchNorm2d, nn.ReLU, nn.Identity)):
        raise TypeError(f"striped(): unsupported layer {layer}")


class _Striped(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, stack: nn.Sequential, *params: torch.Tensor) -> torch.Tensor:
        norms, out = [], x
        for layer in stack:
            if isinstance(layer, nn.BatchNorm2d):
                norms.append(_Norm.of(layer, out))
            out = layer(out)
        ctx.stack, ctx.norms = stack, norms
        ctx.save_for_backward(x, *params)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, *params = ctx.saved_tensors
        stripes = _Stripes(ctx.stack, ctx.norms, x, grad)
        with torch.enable_grad():
            for norm in reversed([n for n in ctx.norms if n.batch]):
                norm.grad_mean, norm.grad_invstd = stripes.adjoints(norm)
            grad_x, grads = stripes.gradients(params, ctx.needs_input_grad[0])
        return grad_x, None, *grads


class _Stripes:
    """Sweeps over horizontal stripes of the recomputed stack."""

    def __init__(self, stack: nn.Sequential, norms: list[_Norm], x: torch.Tensor, grad: torch.Tensor) -> None:
        self.stack, self.norms, self.x, self.grad = stack, norms, x, grad
        batch, _, height, width = x.shape
        self.height, self.rows = height, max(1, STRIPE_PIXELS // (batch * width))
        self.halo = sum(layer.padding[0] for layer in stack if isinstance(layer, nn.Conv2d))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for first in range(0, self.height, self.rows):
            yield first, min(first + self.rows, self.height)

    def _span(self, first: int, last: int) -> tuple[int, int]:
        """The input rows that output rows ``[first, last)`` depend on."""
        return max(0, first - self.halo), min(self.height, last + self.halo)

    def adjoints(self, target: _Norm) -> tuple[torch.Tensor, torch.Tensor]:
        """``(∂L/∂μ, ∂L/∂s)`` of ``target``, the adjoints of every later BatchNorm being known."""
        grad_mean, grad_invstd = torch.zeros_like(target.mean), torch.zeros_like(target.invstd)
        for first, last in self:
            leaves = target.mean.detach().requires_grad_(), target.invstd.detach().requires_grad_()
            loss = self._loss(first, last, self.x[:, :, slice(*self._span(first, last))], target, leaves)
            dm, ds = torch.autograd.grad(loss, leaves)
            grad_mean += dm
            grad_invstd += ds
        return grad_mean, grad_invstd

    def gradients(self, params: list[torch.Tensor], with_x: bool) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """The gradients of the input (when ``with_x``) and of ``params``, every BatchNorm adjoint being known."""
        grad_x = torch.zeros_like(self.x) if with_x else None
        grads = [torch.zeros_like(p) for p in params]
        for first, last in self:
            lo, hi = self._span(first, last)
            stripe = self.x[:, :, lo:hi].detach().requires_grad_(with_x)
            inputs = [stripe, *params] if with_x else params
            found = torch.autograd.grad(self._loss(first, last, stripe, None, ()), inputs)
            if with_x:
                grad_x[:, :, lo:hi] += found[0]
            for total, part in zip(grads, found[len(inputs) - len(params) :], strict=True):
                total += part
        return grad_x, grads

    def _loss(
        self,
        first: int,
        last: int,
        stripe: torch.Tensor,
        target: _Norm | None,
        leaves: tuple[torch.Tensor, ...],
    ) -> torch.Tensor:
        """⟨grad, output⟩ over rows ``[first, last)`` plus the coupling terms of the BatchNorms after ``target``.

        ``stripe``: the input rows :meth:`_span` names; ``leaves``: (μ, s) of ``target`` (all known: None, ()).
        """
        (lo, hi), a = self._span(first, last), stripe
        norms, loss, after = iter(self.norms), a.new_zeros(()), target is None
        for layer in self.stack:
            if isinstance(layer, nn.Conv2d):
                h = layer.padding[0]
                top, bottom = (h if lo == 0 else 0), (h if hi == self.height else 0)
                a = F.conv2d(F.pad(a, (0, 0, top, bottom)), layer.weight, layer.bias, padding=(0, h))
                lo, hi = lo + h - top, hi - h + bottom
            elif isinstance(layer, nn.BatchNorm2d):
                norm = next(norms)
                if norm is target:
                    a, after = norm.apply(a, *leaves), True
                    continue
                if after and norm.batch:
                    loss = loss + norm.coupling(a[:, :, first - lo : last - lo])
                a = norm.apply(a, norm.mean, norm.invstd)
            elif isinstance(layer, nn.ReLU):
                a = F.relu(a)
        return loss + (self.grad[:, :, first:last] * a[:, :, first - lo : last - lo]).sum()
