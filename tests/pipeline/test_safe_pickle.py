"""The restricted unpicklers: refuse code-running pickles, load state dicts, stub foreign modules."""

from __future__ import annotations

import argparse
import pickle
import re
import sys
import types
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from models.vdsr import PORT_STUBS
from pipeline.safe_pickle import (
    ModuleStub,
    UnsafePickleError,
    load_namespace_pickle,
    load_torch_pickle,
)

TORCH_MODULES = tuple(
    f"torch.nn.modules.{path}" for path in ("container.Sequential", "conv.Conv2d", "activation.ReLU")
)


def _call_pickle(qualname: str, *args: str) -> bytes:
    """Protocol-0 pickle bytes that call ``qualname(*args)`` while loading."""
    module, name = qualname.rsplit(".", 1)
    return f"c{module}\n{name}\n(".encode() + b"".join(f"V{arg}\n".encode() for arg in args) + b"tR."


ATTACKS = {  # global → its arguments that would create the marker file
    "os.system": lambda marker: (f"touch {marker}",),
    "builtins.eval": lambda marker: (f"open({str(marker)!r}, 'w')",),
    "builtins.exec": lambda marker: (f"open({str(marker)!r}, 'w')",),
    "subprocess.getoutput": lambda marker: (f"touch {marker}",),
    "builtins.open": lambda marker: (str(marker), "w"),
}


class _OpensMarker:
    """Unpickling this object opens (creates) a file: a stand-in for arbitrary code in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("qualname", list(ATTACKS))
@pytest.mark.parametrize("loader", [load_torch_pickle, load_namespace_pickle])
def test_code_running_globals_are_refused(tmp_path, loader, qualname):
    marker = tmp_path / "marker"
    path = tmp_path / "attack.pkl"
    path.write_bytes(_call_pickle(qualname, *ATTACKS[qualname](marker)))
    with pytest.raises(UnsafePickleError, match=re.escape(qualname)):
        loader(path)
    assert not marker.exists()


@pytest.mark.parametrize("zipfile", [True, False])
def test_payload_inside_a_torch_file_is_refused(tmp_path, zipfile):
    marker = tmp_path / "marker"
    path = tmp_path / "checkpoint.pth"
    torch.save({"w": torch.ones(2), "x": _OpensMarker(marker)}, path, _use_new_zipfile_serialization=zipfile)
    with pytest.raises(UnsafePickleError, match=r"'io\.open'"):
        load_torch_pickle(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # control: an unrestricted load does run the payload
    assert marker.exists()


@pytest.mark.parametrize("zipfile", [True, False])
def test_state_dict_loads(tmp_path, zipfile):
    network = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    path = tmp_path / "state.pth"
    torch.save({"net": network.state_dict(), "epoch": 3}, path, _use_new_zipfile_serialization=zipfile)
    loaded = load_torch_pickle(path)
    assert loaded["epoch"] == 3
    assert list(loaded["net"]) == list(network.state_dict())
    for key, value in network.state_dict().items():
        assert torch.equal(loaded["net"][key], value)


def test_whole_module_pickle_becomes_stubs(tmp_path):
    network = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 1, 3, bias=False))
    path = tmp_path / "model.pth"
    torch.save(network, path)
    with pytest.raises(UnsafePickleError, match="Sequential"):
        load_torch_pickle(path)
    stub = load_torch_pickle(path, stubs=TORCH_MODULES)
    assert isinstance(stub, ModuleStub)
    assert stub.qualname == "torch.nn.modules.container.Sequential"
    assert stub.state_dict().keys() == network.state_dict().keys()
    assert all(torch.equal(stub.state_dict()[k], v) for k, v in network.state_dict().items())


def test_foreign_class_code_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "marker"

    def touch_on_load(self: nn.Module, state: dict) -> None:
        marker.touch()
        nn.Module.__setstate__(self, state)

    foreign = types.ModuleType("foreign_checkpoint")
    foreign.Net = type(
        "Net", (nn.Module,), {"__module__": "foreign_checkpoint", "__setstate__": touch_on_load}
    )
    monkeypatch.setitem(sys.modules, "foreign_checkpoint", foreign)
    network = foreign.Net()
    network.head = nn.Conv2d(1, 1, 3)
    path = tmp_path / "foreign.pth"
    torch.save({"model": network}, path)

    stub = load_torch_pickle(path, stubs=("foreign_checkpoint.Net", "torch.nn.modules.conv.Conv2d"))["model"]
    assert not marker.exists()
    assert repr(stub) == "<stub of foreign_checkpoint.Net>"
    assert set(stub.state_dict()) == {"head.weight", "head.bias"}
    torch.load(path, weights_only=False)  # control: the real class does run its code
    assert marker.exists()


def test_namespace_pickle_loads(tmp_path):
    path = tmp_path / "args.pkl"
    path.write_bytes(pickle.dumps({"parsed_args": argparse.Namespace(k=7, lr=0.1)}, protocol=3))
    args = load_namespace_pickle(path)["parsed_args"]
    assert isinstance(args, argparse.Namespace)
    assert vars(args) == {"k": 7, "lr": 0.1}


def test_namespace_pickle_allows_nothing_else(tmp_path):
    path = tmp_path / "state.pkl"
    path.write_bytes(pickle.dumps(OrderedDict(k=7)))
    with pytest.raises(UnsafePickleError, match=r"'collections\.OrderedDict'"):
        load_namespace_pickle(path)


@pytest.mark.mirror
def test_official_vdsr_port_loads_into_stubs(mirror):
    path = mirror / "pretrained" / "vdsr_twtygqyy_epoch50.pth"
    with pytest.raises(UnsafePickleError, match=r"'vdsr\.Net'"):
        load_torch_pickle(path)
    checkpoint = load_torch_pickle(path, stubs=PORT_STUBS)
    assert checkpoint["epoch"] == 50
    weights = checkpoint["model"].state_dict()
    assert len(weights) == 20
    assert weights["input.weight"].shape == (64, 1, 3, 3)
    assert weights["output.weight"].shape == (1, 64, 3, 3)
    assert {weights[f"residual_layer.{i}.conv.weight"].shape for i in range(18)} == {(64, 64, 3, 3)}
    assert all(w.dtype == torch.float32 and w.abs().sum() > 0 for w in weights.values())


@pytest.mark.mirror
def test_official_args_pickle_loads(mirror):
    args = load_namespace_pickle(mirror / "pretrained" / "n3net_gaussian_sigma25_args.pkl")["parsed_args"]
    assert isinstance(args, argparse.Namespace)
    assert (args.sigma, args.nl_k, args.nl_patchsize, args.nl_stride) == (25, 7, 10, 5)
