"""The neural nearest neighbours (N³) block and its selection rules.

``select_neighbours`` is the heart of the paper: from per-candidate logits (−distance / temperature) it
produces ``k`` weight vectors over the candidates. The rules:

``continuous``
    the paper's deterministic relaxation: round ``j`` takes ``w = softmax(logits)`` and then lowers the logits
    of what was already chosen by ``log(1 − w)``; as the temperature goes to 0 this becomes hard kNN.
``hard``
    plain k-nearest-neighbour selection: one-hot weights on the ``k`` largest logits, in order.
``stochastic``
    sampling without replacement from ``softmax(logits)`` (Gumbel-max), one-hot weights; the stochastic rule
    the relaxation takes the expectation of.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

RULES = ("continuous", "hard", "stochastic")
_LOG_HALF = -math.log(2.0)


class _Log1mExp(torch.autograd.Function):
    """``log(1 − exp(x))`` for ``x ≤ 0``: exact forward, a gradient guarded against ``x → 0``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        low = x < _LOG_HALF
        return torch.where(
            low,
            torch.log1p(-torch.exp(torch.where(low, x, torch.full_like(x, -1.0)))),
            torch.log(-torch.expm1(torch.where(low, torch.full_like(x, -1.0), x))),
        )

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * -torch.exp(x) / (-torch.expm1(x) + 1e-7)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """Numerically stable ``log(1 − exp(x))`` (``x ≤ 0``), differentiable with a guarded gradient."""
    return _Log1mExp.apply(x)


def _one_hot(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(index, like.shape[-1]).to(like.dtype)


def select_neighbours(
    logits: torch.Tensor,
    k: int,
    rule: str = "continuous",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Weights ``(..., k, O)`` over ``O`` candidates from logits ``(..., O)`` (larger = closer).

    ``logits`` already include the temperature (``−d / T``). Candidates with logit ``−inf`` are never chosen.
    """
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; valid rules: {', '.join(RULES)}")
    if not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"k = {k} must lie between 1 and the number of candidates ({logits.shape[-1]})")
    rounds = []
    for _ in range(k):
        if rule == "continuous":
            log_w = torch.log_softmax(logits, dim=-1)
            weights = log_w.exp()
            logits = logits + log1mexp(log_w)
        else:
            scores = logits.detach()
            if rule == "stochastic":
                uniform = torch.rand(scores.shape, generator=generator, device=scores.device, dtype=scores.dtype)
                scores = scores - torch.log(-torch.log(uniform.clamp_min(1e-20)))
            weights = _one_hot(scores.argmax(dim=-1), logits)
            logits = logits.masked_fill(weights.bool(), float("-inf"))
        rounds.append(weights)
    return torch.stack(rounds, dim=-2)
