"""CNet (Yi et al., CVPR 2018) and N³Net-CNet for correspondence classification, with their losses.

Tensors: correspondences ``xs`` are ``B×N×4`` calibrated ``(x1, y1, x2, y2)``; features inside the network are
``B×C×N`` and every convolution is 1×1, so the network is permutation-equivariant in N. Context norm (per
sample and channel over the points) and batch norm without affine parameters follow every branch conv.

``CorrespondenceNet(n3_k=None)`` is CNet (12 residual blocks × 128 channels, 397,057 parameters). With
``n3_k = k`` it is N³Net-CNet: block ``depth/2`` narrows to ``channels/(k+1)``, followed by a point-set N³
block that matches all N points on a learned embedding (squared distance × a learned per-point inverse
temperature, self excluded) and concatenates the input with its ``k`` neighbour aggregates (498,885
parameters for k = 3). The correspondence methods that wrap these networks live in
:mod:`pipeline.correspondence.methods`; this module registers nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.n3block import select_neighbours

CONTEXT_NORM_EPS = 1e-3
BATCH_NORM_EPS = 1e-3


def conv1x1(c_in: int, c_out: int) -> nn.Conv1d:
    """1×1 convolution with CNet's initialisation: truncated normal, std = 2 / fan_in, zero bias."""
    conv = nn.Conv1d(c_in, c_out, kernel_size=1)
    std = 2.0 / c_in
    nn.init.trunc_normal_(conv.weight, std=std, a=-2 * std, b=2 * std)
    nn.init.zeros_(conv.bias)
    return conv


def context_norm(x: torch.Tensor) -> torch.Tensor:
    """Normalise each sample and channel over the points (population variance, no affine)."""
    return F.instance_norm(x, eps=CONTEXT_NORM_EPS)


class ResidualBlock(nn.Module):
    """CNet block: ``(conv → CN → BN → ReLU) × 2`` plus a shortcut (1×1 projection when widths differ)."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList([conv1x1(c_in, c_out), conv1x1(c_out, c_out)])
        self.norms = nn.ModuleList(
            [nn.BatchNorm1d(c_out, eps=BATCH_NORM_EPS, momentum=bn_momentum, affine=False) for _ in range(2)]
        )
        self.shortcut = conv1x1(c_in, c_out) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = x
        for conv, norm in zip(self.convs, self.norms, strict=True):
            branch = F.relu(norm(context_norm(conv(branch))))
        return branch + self.shortcut(x)


class PreActivationBlock(nn.Module):
    """Normalisation-free block of the N³ embedding nets: ``ReLU → conv → ReLU → conv`` plus a shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = conv1x1(c_in, c_out), conv1x1(c_out, c_out)
        self.shortcut = conv1x1(c_in, c_out) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + self.shortcut(x)


def embedding_net(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    """Three pre-activation blocks ``c_in → hidden → hidden → c_out``."""
    return nn.Sequential(
        PreActivationBlock(c_in, hidden), PreActivationBlock(hidden, hidden), PreActivationBlock(hidden, c_out)
    )


def point_logits(embedding: torch.Tensor, inverse_temperature: torch.Tensor) -> torch.Tensor:
    """``B×N×N`` neighbour logits ``−‖e_i − e_j‖² · T_i`` of a ``B×C×N`` embedding, with ``ℓ_ii = −∞``.

    ``inverse_temperature`` is ``B×1×N`` (one value per query point).
    """
    squared = (embedding * embedding).sum(dim=1)
    gram = embedding.transpose(1, 2) @ embedding
    distance = (squared[:, :, None] + squared[:, None, :] - 2 * gram).clamp_min(0.0)
    logits = -distance * inverse_temperature.transpose(1, 2)
    eye = torch.eye(embedding.shape[-1], dtype=torch.bool, device=embedding.device)
    return logits.masked_fill(eye, float("-inf"))


class PointN3Block(nn.Module):
    """N³ block over a point set: every point selects ``k`` soft neighbours among all other points.

    The shared embedding ``e`` and the unconstrained inverse temperature ``T`` are computed from the input
    (:func:`point_logits`); :func:`models.n3block.select_neighbours` relaxes kNN selection on those logits.
    Output ``concat[x, W₁x, …, W_kx]``, ``(k + 1)·C`` channels.
    """

    def __init__(self, channels: int, k: int, hidden: int = 128, rule: str = "continuous") -> None:
        super().__init__()
        self.k, self.rule = k, rule
        self.embed = embedding_net(channels, hidden, channels)
        self.temperature = embedding_net(channels, hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = select_neighbours(point_logits(self.embed(x), self.temperature(x)), self.k, self.rule)
        neighbours = torch.einsum("bikj,bcj->bkci", weights, x).flatten(1, 2)  # weights: B×N×k×N
        return torch.cat([x, neighbours], dim=1)


class CorrespondenceNet(nn.Module):
    """Per-correspondence inlier logits ``B×N`` from ``B×N×4`` calibrated matches (CNet or N³Net-CNet)."""

    def __init__(
        self,
        depth: int = 12,
        channels: int = 128,
        n3_k: int | None = None,
        n3_hidden: int = 128,
        rule: str = "continuous",
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if n3_k is not None and (n3_k < 1 or channels % (n3_k + 1)):
            raise ValueError(f"channels = {channels} must be divisible by n3_k + 1 (n3_k = {n3_k} >= 1)")
        self.input = conv1x1(4, channels)
        self.n3_position = depth // 2 - 1 if n3_k is not None else None
        narrow = channels // (n3_k + 1) if n3_k is not None else channels
        self.blocks = nn.ModuleList(
            ResidualBlock(channels, narrow if i == self.n3_position else channels, bn_momentum) for i in range(depth)
        )
        self.n3 = PointN3Block(narrow, n3_k, n3_hidden, rule) if n3_k is not None else None
        self.output = conv1x1(channels, 1)

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        x = self.input(xs.transpose(1, 2))
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self.n3_position:
                x = self.n3(x)
        return self.output(x)[:, 0]


def inlier_weights(logits: torch.Tensor) -> torch.Tensor:
    """CNet's per-match weights ``relu(tanh(o))`` in [0, 1)."""
    return F.relu(torch.tanh(logits))


def eight_point_rows(xs: torch.Tensor) -> torch.Tensor:
    """``…×N×9`` rows ``[x2x1, x2y1, x2, y2x1, y2y1, y2, x1, y1, 1]``: row-major vec(E) of ``x̂₂ᵀEx̂₁``."""
    x1, y1, x2, y2 = xs.unbind(-1)
    ones = torch.ones_like(x1)
    return torch.stack([x2 * x1, x2 * y1, x2, y2 * x1, y2 * y1, y2, x1, y1, ones], dim=-1)


class _FiniteGradient(torch.autograd.Function):
    """Identity whose backward zeroes the gradient of every sample (dim 0) that has a non-finite entry."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        finite = torch.isfinite(grad).flatten(1).all(dim=1)
        return torch.where(finite.view(-1, *[1] * (grad.ndim - 1)), grad, torch.zeros_like(grad))


def weighted_eight_point(xs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Unit ``B×9`` vec(E): eigenvector of the smallest eigenvalue of ``Xᵀ diag(w) X`` (float64 inside).

    The eigen-decomposition's gradient can blow up (repeated eigenvalues); a sample whose gradient is not
    finite contributes none, the PyTorch counterpart of CNet skipping such steps.
    """
    rows = eight_point_rows(xs.double())
    moment = rows.transpose(-1, -2) @ (weights.double()[..., None] * rows)
    _, vectors = torch.linalg.eigh(_FiniteGradient.apply(moment))
    return vectors[..., 0].to(xs.dtype)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Class-balanced logistic loss per pair, averaged over the batch; labels −1 (unknown) are ignored."""
    positive, negative = (labels == 1).to(logits.dtype), (labels == 0).to(logits.dtype)
    pos = (F.softplus(-logits) * positive).sum(-1) / positive.sum(-1).clamp_min(1.0)
    neg = (F.softplus(logits) * negative).sum(-1) / negative.sum(-1).clamp_min(1.0)
    return (0.5 * pos + 0.5 * neg).mean()


def essential_loss(e_hat: torch.Tensor, essential: torch.Tensor) -> torch.Tensor:
    """Sign-agnostic ``min(‖ê − e‖², ‖ê + e‖²)`` against the normalised ground truth, averaged over the batch."""
    e = essential.flatten(1).to(e_hat.dtype)
    e = e / e.norm(dim=-1, keepdim=True)
    return torch.minimum(((e_hat - e) ** 2).sum(-1), ((e_hat + e) ** 2).sum(-1)).mean()
