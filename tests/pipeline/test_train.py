"""The shared training loop: resumable after kill -9 with bit-identical weights, clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.train import Interrupted, Schedule, train

SCRIPT = """
import os, signal, sys
from pathlib import Path
import torch
sys.path.insert(0, {tests!r})
from test_train import ToyTask, SCHEDULE
from pipeline.train import train

kill_at = int(sys.argv[2])
def on_checkpoint(step):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
network = train(ToyTask(), SCHEDULE, Path(sys.argv[1]), torch.device("cpu"), on_checkpoint)
torch.save(network.state_dict(), Path(sys.argv[1]) / "final.pt")
"""

SCHEDULE = Schedule(steps=40, lr=1e-2, lr_final=1e-3, checkpoint_every=10, validate_every=20,
                    bn_recalibration_steps=5, seed=3)


class ToyTask:
    """Denoise 8×8 patches of a fixed random image with a tiny conv net (with BatchNorm)."""

    def __init__(self) -> None:
        self.image = np.random.default_rng(0).random((32, 32)).astype(np.float32)

    def build(self) -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))

    def batch(self, rng: np.random.Generator, device: torch.device):
        corners = rng.integers(0, 24, (4, 2))
        clean = np.stack([self.image[top : top + 8, left : left + 8] for top, left in corners])[:, None]
        noisy = clean + 0.1 * rng.standard_normal(clean.shape).astype(np.float32)
        return torch.from_numpy(noisy).to(device), torch.from_numpy(clean).to(device)

    def loss(self, network: nn.Module, batch) -> torch.Tensor:
        noisy, clean = batch
        return (network(noisy) - clean).pow(2).mean()

    def validate(self, network: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            return {"val_score": float(network(torch.from_numpy(self.image)[None, None]).mean())}


def run_script(scratch: Path, kill_at: int) -> subprocess.CompletedProcess:
    code = SCRIPT.format(tests=str(Path(__file__).parent))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, str(scratch), str(kill_at)], env=env, capture_output=True,
                          text=True, timeout=300)


def test_kill_9_then_rerun_ends_with_bit_identical_weights(tmp_path):
    whole = run_script(tmp_path / "whole", kill_at=-1)
    assert whole.returncode == 0, whole.stderr
    killed = run_script(tmp_path / "resumed", kill_at=20)
    assert killed.returncode == -signal.SIGKILL
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 20
    resumed = run_script(tmp_path / "resumed", kill_at=-1)
    assert resumed.returncode == 0, resumed.stderr
    expected = torch.load(tmp_path / "whole" / "final.pt", weights_only=True)
    actual = torch.load(tmp_path / "resumed" / "final.pt", weights_only=True)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_sigterm_writes_a_checkpoint_and_stops_cleanly(tmp_path):
    def on_checkpoint(step: int) -> None:
        if step == 10:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Interrupted, match="rerun to resume"):
        train(ToyTask(), SCHEDULE, tmp_path, torch.device("cpu"), on_checkpoint)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 10


def test_training_logs_loss_and_validation_with_dvclive(tmp_path):
    train(ToyTask(), SCHEDULE, tmp_path, torch.device("cpu"))
    metrics = tmp_path / "live" / "plots" / "metrics"
    loss = (metrics / "loss.tsv").read_text().splitlines()
    assert loss[0].split("\t") == ["step", "loss"] and len(loss) == 1 + 45
    assert len((metrics / "val_score.tsv").read_text().splitlines()) == 1 + 3
