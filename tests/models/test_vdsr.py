"""VDSR: architecture, the port importer (safe against code-running pickles), and the Set5 reproduction."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models.vdsr import PORT_FILE, VDSR, VDSRMethod
from pipeline.data.download import sha256_file
from pipeline.data.images import read_image
from pipeline.evaluate import SuperResolutionTask
from pipeline.methods import METHODS
from pipeline.safe_pickle import UnsafePickleError

PAPER_SET5 = {2: 37.53, 3: 33.66, 4: 31.35}  # VDSR paper, Table 2 (Set5, PSNR on Y)


def _tiny_method(depth: int = 3, features: int = 4, seed: int = 0) -> VDSRMethod:
    torch.manual_seed(seed)
    method = VDSRMethod(depth=depth, features=features)
    method.load(method.build_network(2).state_dict(), 2)
    return method


def test_registered_with_hparams_and_one_official_file() -> None:
    method = METHODS.get("vdsr")(depth=5, features=16)
    assert method.tasks == ("sr",) and method.settings == (2, 3, 4)
    assert method.hparams == {"depth": 5, "features": 16}
    assert all(method.official_file(scale) is PORT_FILE for scale in (2, 3, 4))
    assert PORT_FILE.mirror_path == "pretrained/vdsr_twtygqyy_epoch50.pth"


def test_layers_follow_depth_and_features() -> None:
    network = VDSR(depth=4, features=8)
    convs = [layer for layer in network.layers if isinstance(layer, nn.Conv2d)]
    assert [tuple(conv.weight.shape[:2]) for conv in convs] == [(8, 1), (8, 8), (8, 8), (1, 8)]
    assert all(conv.bias is None for conv in convs)
    assert len(network.layers) == 2 * 4 - 1  # conv, ReLU, …, conv


def test_global_residual() -> None:
    network = VDSR(depth=3, features=4).eval()
    x = torch.rand(2, 1, 17, 23)
    assert network(x).shape == x.shape
    with torch.no_grad():
        network.layers[-1].weight.zero_()
    assert torch.equal(network(x), x)


def test_receptive_field_is_two_depth_plus_one() -> None:
    torch.manual_seed(0)
    network = VDSR(depth=3, features=4).eval()
    x = torch.zeros(1, 1, 21, 21)
    x[..., 10, 10] = 1.0
    with torch.no_grad():
        changed = (network(x) - network(torch.zeros_like(x)) - x).abs()[0, 0] > 0
    assert changed.any()
    assert not changed[:7].any() and not changed[14:].any()
    assert not changed[:, :7].any() and not changed[:, 14:].any()


def test_restore_takes_the_sr_task_input() -> None:
    method = _tiny_method()
    task = SuperResolutionTask({})
    rgb = np.random.default_rng(0).integers(0, 256, (30, 26, 3), dtype=np.uint8)
    sample = task.degrade(rgb, "random", "x", 3)
    estimate = method.restore(sample.degraded, 3)
    assert estimate.dtype == np.float32 and estimate.shape == sample.reference.shape == (30, 24)
    assert np.isfinite(task.score(estimate, sample, 3)).all()


@pytest.mark.parametrize("scale", [1, 5, 8])
def test_unsupported_scale_is_refused(scale: int) -> None:
    method = _tiny_method()
    with pytest.raises(ValueError, match=r"one of \(2, 3, 4\)"):
        method.build_network(scale)
    with pytest.raises(ValueError, match=r"one of \(2, 3, 4\)"):
        method.restore(np.zeros((8, 8), np.float32), scale)


def test_restore_refuses_color() -> None:
    with pytest.raises(ValueError, match="one luma channel"):
        _tiny_method().restore(np.zeros((8, 8, 3), np.float32), 2)


def _fake_port_module(monkeypatch: pytest.MonkeyPatch, depth: int) -> type[nn.Module]:
    """A module ``vdsr`` with the port's ``Net`` layout (``input``, ``residual_layer``, ``output``)."""

    class Conv_ReLU_Block(nn.Module):  # the port's class name
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.conv(x))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.residual_layer = nn.Sequential(*(Conv_ReLU_Block() for _ in range(depth - 2)))
            self.input = nn.Conv2d(1, 8, 3, padding=1, bias=False)
            self.output = nn.Conv2d(8, 1, 3, padding=1, bias=False)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.output(self.residual_layer(self.relu(self.input(x)))) + x

    module = types.ModuleType("vdsr")
    for cls in (Conv_ReLU_Block, Net):
        cls.__module__, cls.__qualname__ = "vdsr", cls.__name__
        setattr(module, cls.__name__, cls)
    monkeypatch.setitem(sys.modules, "vdsr", module)
    return Net


def test_port_layout_imports_strictly_and_computes_the_same(tmp_path, monkeypatch) -> None:
    torch.manual_seed(1)
    port = _fake_port_module(monkeypatch, depth=5)().eval()
    path = tmp_path / "model_epoch_50.pth"
    torch.save({"epoch": 50, "model": port}, path)
    method = VDSRMethod(depth=5, features=8)
    state = method.import_official(path, 4)
    assert list(state) == [f"layers.{2 * index}.weight" for index in range(5)]
    method.load(state, 4)
    image = np.random.default_rng(1).random((20, 24), dtype=np.float32)
    with torch.no_grad():
        expected = port(torch.from_numpy(image)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(method.restore(image, 4), expected, atol=1e-6)


def test_port_of_another_depth_is_refused(tmp_path, monkeypatch) -> None:
    path = tmp_path / "model.pth"
    torch.save({"epoch": 50, "model": _fake_port_module(monkeypatch, depth=4)()}, path)
    with pytest.raises(ValueError, match="depth-5 VDSR"):
        VDSRMethod(depth=5).import_official(path, 2)


def test_checkpoint_without_a_model_is_refused(tmp_path) -> None:
    path = tmp_path / "state.pth"
    torch.save({"epoch": 50, "state_dict": VDSR(depth=3).state_dict()}, path)
    with pytest.raises(ValueError, match="pickled 'model'"):
        VDSRMethod(depth=3).import_official(path, 2)


class _RunsShell:
    """Unpickling this calls ``os.system``: a checkpoint that tries to run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def test_port_pickle_that_runs_code_is_refused(tmp_path, monkeypatch) -> None:
    """A ``vdsr.Net`` checkpoint (the stubbed class allowed) carrying an ``os.system`` payload."""
    marker = tmp_path / "marker"
    port = _fake_port_module(monkeypatch, depth=3)()
    port.payload = _RunsShell(marker)  # pickled inside the model's __dict__
    path = tmp_path / "model_epoch_50.pth"
    torch.save({"epoch": 50, "model": port}, path)
    with pytest.raises(UnsafePickleError, match=rf"'{os.system.__module__}\.system'.*not on the allow-list"):
        VDSRMethod(depth=3).import_official(path, 2)
    assert not marker.exists()


def _set5_psnr(method: VDSRMethod, folder: Path, scale: int) -> float:
    """Mean Set5 PSNR on Y through the SR task (8-bit Y, MATLAB bicubic, 8-bit output, border = scale)."""
    task = SuperResolutionTask({"y_quantize": True, "output_quantize": True})
    values = []
    for path in sorted(folder.glob("*_GT.bmp")):
        sample = task.degrade(read_image(path), "set5", path.stem, scale)
        values.append(task.score(method.restore(sample.degraded, scale), sample, scale)[0])
    assert len(values) == 5
    return float(np.mean(values))


@pytest.mark.mirror
def test_official_port_file_matches_its_checksum(mirror: Path) -> None:
    assert sha256_file(mirror / PORT_FILE.mirror_path) == PORT_FILE.sha256


@pytest.mark.mirror
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_port_reproduces_set5(mirror: Path, scale: int) -> None:
    """Measured: 37.589 / 33.748 / 31.434 dB at ×2 / ×3 / ×4 (the paper: 37.53 / 33.66 / 31.35)."""
    method = VDSRMethod()
    method.load(method.import_official(mirror / PORT_FILE.mirror_path, scale), scale)  # strict
    assert method.hparams == {"depth": 20, "features": 64}
    assert _set5_psnr(method, mirror / "datasets" / "set5", scale) == pytest.approx(PAPER_SET5[scale], abs=0.3)
