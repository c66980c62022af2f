"""Training CNet / N³Net-CNet with the shared loop :func:`pipeline.train.train`.

:class:`CorrespondenceTraining` is a :class:`pipeline.train.TrainingTask`. Loss schedule (spec §1.5): the
class-balanced classification loss, plus ``essential_weight`` × the essential loss from step
``essential_start`` on (20,000 in the paper; lower it for short runs). Batches draw ``batch_size`` pairs
without replacement and truncate all of them to the smallest N among them (optionally capped by
``max_matches``), in stored order. Validation reports mAP@5/10/20 of protocol (a), the weighted eight-point.
:func:`cnet_schedule` is CNet's optimiser setting (constant Adam learning rate, no weight decay).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.cnet import classification_loss, essential_loss, inlier_weights, weighted_eight_point
from pipeline.correspondence.evaluate import REPORTED_THRESHOLDS, evaluate
from pipeline.correspondence.methods import MATCHERS, LearnedMatcher, checkpoint_metadata
from pipeline.correspondence.tables import Pair, screen
from pipeline.train import Schedule, finish, train


@dataclass(frozen=True)
class Batch:
    """``xs`` B×N×4 float32, ``labels`` B×N int64 (−1 unknown), ``essential`` B×3×3, and the training step."""

    xs: torch.Tensor
    labels: torch.Tensor
    essential: torch.Tensor
    step: int


def collate(pairs: Sequence[Pair], step: int = 0, max_matches: int | None = None) -> Batch:
    """Stack pairs truncated to their common (smallest) number of matches."""
    n = min(len(pair) for pair in pairs)
    n = min(n, max_matches) if max_matches else n
    return Batch(
        xs=torch.from_numpy(np.stack([pair.xs[:n] for pair in pairs])),
        labels=torch.from_numpy(np.stack([pair.label[:n] for pair in pairs]).astype(np.int64)),
        essential=torch.from_numpy(np.stack([pair.E for pair in pairs]).astype(np.float32)),
        step=step,
    )


@dataclass
class CorrespondenceTraining:
    """Train a registered learned matcher (``cnet``, ``n3net-cnet``) on screened pairs.

    ``step`` counts the batches drawn; :func:`fit` sets it from the checkpoint when a run resumes.
    """

    train: Sequence[Pair]
    val: Sequence[Pair]
    method: str = "cnet"
    hparams: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    max_matches: int | None = None
    essential_start: int = 20_000
    essential_weight: float = 0.1
    step: int = 0

    def __post_init__(self) -> None:
        if not issubclass(MATCHERS.get(self.method), LearnedMatcher):
            raise ValueError(f"correspondence method {self.method!r} is not trainable")
        self.train, self.val = screen(self.train).pairs, screen(self.val).pairs
        if len(self.train) < self.batch_size:
            raise ValueError(f"{len(self.train)} usable training pairs < batch size {self.batch_size}")

    def build(self) -> nn.Module:
        return MATCHERS.get(self.method).build_network(**self.hparams)

    def batch(self, rng: np.random.Generator, device: torch.device) -> Batch:
        chosen = rng.choice(len(self.train), size=self.batch_size, replace=False)
        batch = collate([self.train[i] for i in chosen], self.step, self.max_matches)
        self.step += 1
        return Batch(batch.xs.to(device), batch.labels.to(device), batch.essential.to(device), batch.step)

    def loss(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        logits = network(batch.xs)
        loss = classification_loss(logits, batch.labels)
        if batch.step >= self.essential_start:
            e_hat = weighted_eight_point(batch.xs, inlier_weights(logits))
            loss = loss + self.essential_weight * essential_loss(e_hat, batch.essential)
        return loss

    def validate(self, network: nn.Module) -> dict[str, float]:
        """mAP@5/10/20 of the weighted eight-point protocol on the validation pairs."""
        if not self.val:
            return {}
        matcher = MATCHERS.get(self.method)(network=network, protocol="weighted8")
        _, summary = evaluate(matcher, self.val, self.method)
        return {f"val_map{threshold}": summary[f"map{threshold}"] for threshold in REPORTED_THRESHOLDS}


def cnet_schedule(steps: int, lr: float = 1e-3, seed: int = 0, validate_every: int = 5000,
                  checkpoint_every: int = 1000) -> Schedule:
    """CNet's optimisation: Adam at a constant ``lr``, no weight decay."""
    return Schedule(steps=steps, lr=lr, lr_final=lr, weight_decay=0.0, checkpoint_every=checkpoint_every,
                    validate_every=validate_every, seed=seed)


def _resumed_step(scratch: Path) -> int:
    checkpoint = scratch / "checkpoint.pt"
    if not checkpoint.exists():
        return 0
    return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["step"])


def fit(
    task: CorrespondenceTraining,
    schedule: Schedule,
    scratch: Path,
    device: torch.device | str = "cpu",
    out: Path | None = None,
) -> LearnedMatcher:
    """Train (or resume) in ``scratch``; with ``out``, write ``out/model.pt`` for :func:`load_matcher`."""
    task.step = _resumed_step(scratch)
    network = train(task, schedule, scratch, torch.device(device))
    if out is not None:
        finish(scratch, network, out, checkpoint_metadata(task.method, task.hparams))
    return MATCHERS.get(task.method)(network=network)
