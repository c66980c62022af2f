"""The training loop shared by every learned method: resumable, logged with dvclive, CPU/CUDA/DDP.

A training *task* supplies the network, the batches and the loss; this module owns the rest. Batches are a
pure function of ``(seed, step, rank)``, the optimizer state is checkpointed atomically every
``checkpoint_every`` steps and on SIGTERM, so a run killed at any point resumes from its last checkpoint and,
on CPU, ends with exactly the weights of an uninterrupted run. Multi-GPU: launch the same entry point with
``torchrun --nproc_per_node=N``; each rank draws its own batches and gradients are averaged by DDP.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pipeline.errors import UserError

MODEL_FILE = "model.pt"  # the weights and metadata of a trained network (save_model)
MANIFEST_FILE = "model.json"  # what produced a model folder, readable without torch


class TrainingTask(Protocol):
    """What a learned method provides for training."""

    def build(self) -> nn.Module: ...

    def batch(self, rng: np.random.Generator, device: torch.device) -> Any: ...

    def loss(self, network: nn.Module, batch: Any) -> torch.Tensor: ...

    def validate(self, network: nn.Module) -> dict[str, float]: ...


@dataclass(frozen=True)
class Schedule:
    """Optimisation settings (the ``fit`` block of a profile)."""

    steps: int
    lr: float = 1e-3
    lr_final: float = 1e-6
    weight_decay: float = 1e-4
    checkpoint_every: int = 100
    validate_every: int = 100
    bn_recalibration_steps: int = 0
    seed: int = 0

    def learning_rate(self, step: int) -> float:
        """Exponential decay from ``lr`` to ``lr_final``; 0 during the final BN re-estimation steps."""
        if step >= self.steps:
            return 0.0
        return self.lr * (self.lr_final / self.lr) ** (step / max(1, self.steps - 1))


class Interrupted(UserError, RuntimeError):
    """Training stopped by SIGTERM after writing a checkpoint."""


def _rank() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _atomic_save(payload: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ckpt.", suffix=".tmp")
    os.close(handle)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _optimizer(network: nn.Module, schedule: Schedule) -> torch.optim.Optimizer:
    """Adam; weight decay on every parameter except biases (as the official N3Net code)."""
    decay = [p for name, p in network.named_parameters() if not name.endswith("bias")]
    rest = [p for name, p in network.named_parameters() if name.endswith("bias")]
    groups = [{"params": decay, "weight_decay": schedule.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.Adam(groups, lr=schedule.lr, betas=(0.9, 0.999), eps=1e-8)


@contextmanager
def _sigterm_flag() -> Iterator[list[bool]]:
    flag = [False]
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        flag[0] = True

    signal.signal(signal.SIGTERM, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def _logger(live_dir: Path, rank: int) -> Any:
    if rank != 0:
        return None
    from dvclive import Live

    return Live(dir=str(live_dir), resume=True, dvcyaml=False, save_dvc_exp=False, report=None)


def _log(live: Any, step: int, values: dict[str, float]) -> None:
    if live is None:
        return
    live.step = step
    for name, value in values.items():
        live.log_metric(name, value)
    live.next_step()


def _reestimate_batchnorm(network: nn.Module, reset: bool) -> None:
    """Switch every BatchNorm to a cumulative average for the final re-estimation steps (weights frozen), so its
    running statistics become the plain mean over those batches, whatever the training momentum (DnCNN's 0.001
    would need thousands of steps); ``reset`` starts the average afresh (not when resuming in this phase)."""
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if reset:
                module.reset_running_stats()
            module.momentum = None


def train(
    task: TrainingTask,
    schedule: Schedule,
    scratch: Path,
    device: torch.device,
    on_checkpoint: Callable[[int], None] | None = None,
) -> nn.Module:
    """Train (or resume) in ``scratch``; returns the trained network (unwrapped, on ``device``)."""
    rank, world = _rank()
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.manual_seed(schedule.seed)
    network = task.build().to(device)
    optimizer = _optimizer(network, schedule)
    checkpoint = scratch / "checkpoint.pt"
    start = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
    model = nn.parallel.DistributedDataParallel(network) if world > 1 else network
    live = _logger(scratch / "live", rank)
    total = schedule.steps + schedule.bn_recalibration_steps

    def save(step: int) -> None:
        if rank == 0:
            payload = {"network": network.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
            _atomic_save(payload, checkpoint)
            if on_checkpoint:
                on_checkpoint(step)

    with _sigterm_flag() as stop, tqdm(total=total, initial=start, desc="train", unit="step",
                                       disable=rank != 0) as bar:
        for step in range(start, total):
            if step >= schedule.steps and (step == schedule.steps or step == start):
                _reestimate_batchnorm(network, reset=step == schedule.steps)
            model.train()
            rng = np.random.default_rng([schedule.seed, step, rank])
            for group in optimizer.param_groups:
                group["lr"] = schedule.learning_rate(step)
            loss = task.loss(model, task.batch(rng, device))
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"training loss became {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            if step < schedule.steps:
                loss.backward()
                optimizer.step()
            bar.update(1)
            values = {"loss": loss.item()}
            done = step + 1
            if done % schedule.validate_every == 0 or done == total:
                network.eval()
                values.update(task.validate(network))
            _log(live, done, values)
            if done % schedule.checkpoint_every == 0 or done == total:
                save(done)
            if stop[0]:
                save(done)
                raise Interrupted(f"stopped by SIGTERM at step {done}; rerun to resume")
    if live is not None:
        live.end()
    return network.eval()


def save_model(network: nn.Module, out: Path, metadata: dict[str, Any]) -> None:
    """Write ``out/model.pt``: the weights and the metadata that produced them."""
    _atomic_save({"state_dict": network.state_dict(), **metadata}, out / MODEL_FILE)


def finish(scratch: Path, network: nn.Module, out: Path, metadata: dict[str, Any]) -> None:
    """Save the trained model and copy the dvclive history from ``scratch`` into ``out``."""
    save_model(network, out, metadata)
    if (scratch / "live").exists():
        shutil.copytree(scratch / "live", out / "live", dirs_exist_ok=True)
