"""Training task for CNet / N³Net-CNet in the shape the pipeline's training loop expects.

``build() -> nn.Module``, ``batches(rng)`` (infinite), ``loss(network, batch, step)`` and ``validate(network)``.
Loss schedule (spec §1.5): the class-balanced classification loss, plus ``essential_weight`` × the essential
loss from step ``essential_start`` on (20,000 in the paper; lower it for smoke runs). Batches draw
``batch_size`` pairs without replacement and truncate all of them to the smallest N among them (optionally
capped by ``max_matches``), in stored order. Validation uses protocol (a), the weighted eight-point.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from models.cnet import classification_loss, essential_loss, inlier_weights, weighted_eight_point
from pipeline.correspondence.evaluate import REPORTED_THRESHOLDS, evaluate
from pipeline.correspondence.methods import MATCHERS, LearnedMatcher
from pipeline.correspondence.tables import Pair, screen


@dataclass(frozen=True)
class Batch:
    """``xs`` B×N×4 float32, ``labels`` B×N int64 (−1 unknown), ``essential`` B×3×3 float32."""

    xs: torch.Tensor
    labels: torch.Tensor
    essential: torch.Tensor


def collate(pairs: Sequence[Pair], max_matches: int | None = None) -> Batch:
    """Stack pairs truncated to their common (smallest) number of matches."""
    n = min(len(pair) for pair in pairs)
    n = min(n, max_matches) if max_matches else n
    return Batch(
        xs=torch.from_numpy(np.stack([pair.xs[:n] for pair in pairs])),
        labels=torch.from_numpy(np.stack([pair.label[:n] for pair in pairs]).astype(np.int64)),
        essential=torch.from_numpy(np.stack([pair.E for pair in pairs]).astype(np.float32)),
    )


@dataclass
class CorrespondenceTraining:
    """Train a registered learned matcher (``cnet``, ``n3net_cnet``) on screened pairs."""

    train: Sequence[Pair]
    val: Sequence[Pair]
    method: str = "cnet"
    hparams: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    max_matches: int | None = None
    essential_start: int = 20_000
    essential_weight: float = 0.1
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        if not issubclass(MATCHERS.get(self.method), LearnedMatcher):
            raise ValueError(f"correspondence method {self.method!r} is not trainable")
        self.train, self.val = screen(self.train).pairs, screen(self.val).pairs
        if len(self.train) < self.batch_size:
            raise ValueError(f"{len(self.train)} usable training pairs < batch size {self.batch_size}")

    def build(self) -> nn.Module:
        return MATCHERS.get(self.method).build_network(**self.hparams)

    def batches(self, rng: np.random.Generator) -> Iterator[Batch]:
        while True:
            chosen = rng.choice(len(self.train), size=self.batch_size, replace=False)
            yield collate([self.train[i] for i in chosen], self.max_matches)

    def loss(self, network: nn.Module, batch: Batch, step: int) -> torch.Tensor:
        logits = network(batch.xs)
        loss = classification_loss(logits, batch.labels)
        if step >= self.essential_start:
            e_hat = weighted_eight_point(batch.xs, inlier_weights(logits))
            loss = loss + self.essential_weight * essential_loss(e_hat, batch.essential)
        return loss

    def validate(self, network: nn.Module) -> dict[str, float]:
        """mAP@5/10/20 of the weighted eight-point protocol on the validation pairs."""
        matcher = MATCHERS.get(self.method)(network=network, protocol="weighted8")
        _, summary = evaluate(matcher, self.val, self.method)
        return {f"map{threshold}": summary[f"map{threshold}"] for threshold in REPORTED_THRESHOLDS}


def train_in_memory(task: CorrespondenceTraining, steps: int, seed: int = 0) -> tuple[nn.Module, list[float]]:
    """A minimal Adam loop for tests and smoke runs (no checkpoints); skips steps with non-finite gradients.

    Returns the trained network and the per-step losses.
    """
    torch.manual_seed(seed)
    network = task.build()
    network.train()
    optimiser = torch.optim.Adam(network.parameters(), lr=task.learning_rate)
    batches = task.batches(np.random.default_rng(seed))
    losses = []
    for step in range(steps):
        optimiser.zero_grad()
        loss = task.loss(network, next(batches), step)
        loss.backward()
        gradients = [p.grad for p in network.parameters() if p.grad is not None]
        if torch.isfinite(loss) and all(torch.isfinite(g).all() for g in gradients):
            optimiser.step()
        losses.append(float(loss))
    return network, losses
