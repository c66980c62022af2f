"""Reading untrusted pickles (foreign checkpoints, ``args.pkl`` files) without running any of their code.

A pickle can name any importable callable and call it while loading, so the unpicklers here resolve globals
only through an explicit allow-list and refuse everything else with :class:`UnsafePickleError`:

* torch's tensor and parameter rebuild helpers and the plain containers ``collections.OrderedDict``, ``set``
  and ``frozenset`` (a state dict; a pickled module's bookkeeping);
* caller-named foreign classes, each replaced by an inert :class:`ModuleStub` that keeps a module's
  ``_parameters``, ``_buffers`` and ``_modules`` and executes none of the original class's code;
* for :func:`load_namespace_pickle`, ``argparse.Namespace`` alone.

Every allowed object that a pickle could alter (a pickle may set attributes on the objects it names) is made
afresh for each load, so one file cannot tamper with the next load or with the rest of the process.
"""

from __future__ import annotations

import argparse
import pickle
import types
import warnings
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import torch
from torch.serialization import SourceChangeWarning

from pipeline.errors import UserError

_MODULE_FIELDS = ("_parameters", "_buffers", "_modules")
_CONTAINERS: dict[str, object] = {
    "collections.OrderedDict": OrderedDict,
    **{
        f"{module}.{kind.__name__}": kind
        for module in ("builtins", "__builtin__")
        for kind in (set, frozenset)
    },
}


class UnsafePickleError(UserError, pickle.UnpicklingError):
    """A pickle named a global that the loader's allow-list does not hold."""


class ModuleStub:
    """An inert stand-in for a pickled ``nn.Module``: keeps its parameters, buffers and sub-modules only."""

    qualname: ClassVar[str] = ""
    dump_patches: ClassVar[bool] = False  # read by torch when a pickled module's source differs from ours

    def __init__(self, *_args: object, **_kwargs: object) -> None:
        self.__setstate__({})

    def __setstate__(self, state: object) -> None:
        fields = state if isinstance(state, dict) else {}
        for field in _MODULE_FIELDS:
            value = fields.get(field)
            setattr(self, field, dict(value) if isinstance(value, Mapping) else {})

    def __repr__(self) -> str:
        return f"<stub of {self.qualname}>"

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """The tensors of this stub and its children under torch's dotted state-dict names (``None`` skipped)."""
        tensors = {
            f"{prefix}{name}": value.detach()
            for field in ("_parameters", "_buffers")
            for name, value in getattr(self, field).items()
            if isinstance(value, torch.Tensor)
        }
        for name, module in self._modules.items():
            if isinstance(module, ModuleStub):
                tensors.update(module.state_dict(f"{prefix}{name}."))
        return tensors


def _stub_class(qualname: str) -> type[ModuleStub]:
    return type(qualname.rpartition(".")[2], (ModuleStub,), {"qualname": qualname})


def _tensor_helpers() -> dict[str, Callable[..., torch.Tensor]]:
    """torch's rebuild helpers behind fresh wrappers that drop any pickled backward hooks."""
    utils = torch._utils

    def rebuild_tensor(storage: Any, offset: int, size: tuple, stride: tuple) -> torch.Tensor:
        return utils._rebuild_tensor(storage, offset, size, stride)

    def rebuild_tensor_v2(
        storage: Any,
        offset: int,
        size: tuple,
        stride: tuple,
        requires_grad: bool,
        _hooks: object,
        *metadata: Any,
    ) -> torch.Tensor:
        return utils._rebuild_tensor_v2(
            storage, offset, size, stride, requires_grad, OrderedDict(), *metadata
        )

    def rebuild_parameter(
        data: torch.Tensor, requires_grad: bool = True, _hooks: object = None
    ) -> torch.Tensor:
        return torch.nn.Parameter(data, requires_grad)

    return {
        "torch._utils._rebuild_tensor": rebuild_tensor,
        "torch._utils._rebuild_tensor_v2": rebuild_tensor_v2,
        "torch._utils._rebuild_parameter": rebuild_parameter,
        "torch.nn.parameter.Parameter": rebuild_parameter,  # PyTorch ≤ 0.3 pickled Parameter(data) itself
    }


def _restricted_module(allowed: Mapping[str, object]) -> types.ModuleType:
    """A ``pickle``-like module (``Unpickler``, ``load``) resolving no globals but ``allowed``."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            qualname = f"{module}.{name}"
            if qualname not in allowed:
                raise UnsafePickleError(
                    f"refused to unpickle the global {qualname!r}: it is not on the allow-list"
                )
            return allowed[qualname]

    def load(file: BinaryIO, **kwargs: Any) -> Any:
        return Unpickler(file, **kwargs).load()

    namespace = types.ModuleType("n3bench_restricted_pickle")
    namespace.Unpickler = Unpickler
    namespace.load = load
    return namespace


def load_torch_pickle(path: Path, stubs: Collection[str] = ()) -> object:
    """Load a ``torch.save`` file (any format) on the CPU through the restricted unpickler.

    ``stubs`` are the qualified names (``"vdsr.Net"``) of the classes, or legacy factory functions, that the
    file may name and that are to become inert :class:`ModuleStub` instances. Any other global is refused.
    """
    allowed = {**_CONTAINERS, **_tensor_helpers()}
    allowed.update({name: _stub_class(name) for name in stubs})
    with warnings.catch_warnings():  # torch compares a pickled module's source with its stub's and warns
        warnings.simplefilter("ignore", SourceChangeWarning)
        warnings.filterwarnings("ignore", message="Couldn't retrieve source code")
        return torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=_restricted_module(allowed)
        )


def load_namespace_pickle(path: Path) -> object:
    """Load a plain pickle that names no global but ``argparse.Namespace`` (the official ``*_args.pkl``)."""
    namespace = type(
        "Namespace", (argparse.Namespace,), {}
    )  # a fresh subclass: the pickle cannot alter argparse
    with open(path, "rb") as file:
        return _restricted_module({"argparse.Namespace": namespace}).load(file)
