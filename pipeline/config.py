"""Load and validate ``params.yaml``; resolve the active profile.

Every stage calls :func:`load_params` first, so a malformed file fails before any work starts, with the key
that is wrong and the values it may take.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import UserError

PARAMS_FILE = Path("params.yaml")
PROFILES = ("smoke", "pretrained", "paper")
FOLDER_COLORS = ("gray", "y", "rgb")
#: the params key of each task's setting axis
#: a ``methods`` entry with this key is an ablation variant: the named model with other hyper-parameters
VARIANT_KEY = "variant_of"
SETTINGS = {"denoise": "sigmas", "sr": "scales", "realnoise": "sigmas"}
#: correspondence classification: its matrix is method × training set, each cell testing the profile's test sets
CORRESPONDENCE = "correspondence"
#: the tasks of the fit and evaluate stages
STAGE_TASKS = (*SETTINGS, CORRESPONDENCE)


class ParamsError(UserError, ValueError):
    """``params.yaml`` does not follow the schema; the message names the key."""


def _is_list_of(kind: type | tuple[type, ...]):
    def check(value: Any) -> bool:
        return isinstance(value, list) and all(
            isinstance(item, kind) and not isinstance(item, bool) for item in value
        )

    return check


_NAMES = _is_list_of(str)
_INTS = _is_list_of(int)
_ANY_MAPPING = "mapping"  # free-form block (method hyper-parameters, folder datasets)


def _cells(value: Any) -> bool:
    """Correspondence cells: a mapping from each training set to the list of its test sets."""
    return isinstance(value, dict) and all(isinstance(key, str) and _NAMES(tests) for key, tests in value.items())


FIT_SCHEMA: dict[str, Any] = {
    "mode": ("train", "official"),
    "steps": int,
    "batch_size": int,
    "patch_size": int,
    "lr": float,
    "lr_final": float,
    "weight_decay": float,
    "checkpoint_every": int,
    "validate_every": int,
    "sigma_range": _INTS,
    "bn_recalibration_steps": int,
}
TASK_PROFILE_SCHEMA: dict[str, Any] = {
    "methods": _NAMES,
    "testsets": _NAMES,
    "trainsets": _NAMES,
    "max_images": (int, type(None)),
    "fit": FIT_SCHEMA,  # the task's overrides of the profile's fit block (e.g. its own epoch length)
}
CORRESPONDENCE_FIT_SCHEMA: dict[str, Any] = {
    "steps": int,
    "batch_size": int,
    "max_matches": (int, type(None)),
    "lr": float,
    "essential_start": int,
    "essential_weight": float,
    "checkpoint_every": int,
    "validate_every": int,
    "val_pairs": (int, type(None)),
}
CORRESPONDENCE_PROFILE_SCHEMA: dict[str, Any] = {
    "methods": _NAMES,
    "datasets": _NAMES,
    "cells": _cells,
    "max_pairs": (int, type(None)),
    "synthetic": {"train": int, "val": int, "test": int, "n_matches": int},
    "fit": CORRESPONDENCE_FIT_SCHEMA,
}
#: the timing benchmarks a profile may run (modules of ``benchmarks/``; stage ``benchmark``)
BENCHMARKS = ("n3block", "pipeline")
SCHEMA: dict[str, Any] = {
    "profile": PROFILES,
    "mirror": (str, type(None)),
    "seed": int,
    "datasets": _NAMES,
    "folders": _ANY_MAPPING,
    "denoise": {
        "methods": _NAMES,
        "sigmas": _INTS,
        "protocol": {"noise_clip": bool, "noise_quantize": bool, "output_quantize": bool},
        "bootstrap": {"resamples": int, "confidence": float},
    },
    "sr": {
        "methods": _NAMES,
        "scales": _INTS,
        "protocol": {"y_quantize": bool, "output_quantize": bool},
    },
    "realnoise": {"methods": _NAMES, "sigmas": _INTS, "protocol": {"output_quantize": bool}},
    CORRESPONDENCE: {
        "methods": _NAMES,
        "trainsets": _NAMES,
        "datasets": _NAMES,
        "protocol": {"pose": ("ransac", "weighted8"), "ransac_threshold": float},
    },
    "methods": _ANY_MAPPING,
    "benchmarks": _NAMES,
    "profiles": {
        profile: {
            "device": ("cpu", "cuda", "auto"),
            "datasets": _NAMES,
            "benchmarks": _NAMES,
            "methods": _ANY_MAPPING,
            "denoise": {**TASK_PROFILE_SCHEMA, "sigmas": _INTS},
            "sr": {**TASK_PROFILE_SCHEMA, "scales": _INTS},
            "realnoise": {**TASK_PROFILE_SCHEMA, "sigmas": _INTS},
            CORRESPONDENCE: CORRESPONDENCE_PROFILE_SCHEMA,
            "fit": FIT_SCHEMA,
        }
        for profile in PROFILES
    },
}


def _describe(expected: Any) -> str:
    if isinstance(expected, tuple) and all(isinstance(item, str) for item in expected):
        return "one of " + ", ".join(expected)
    if isinstance(expected, tuple):
        return " or ".join("null" if kind is type(None) else kind.__name__ for kind in expected)
    if isinstance(expected, type):
        return expected.__name__
    if expected == _ANY_MAPPING or isinstance(expected, dict):
        return "a mapping"
    if expected is _cells:
        return "a mapping from training set to a list of test sets"
    return "a list of " + ("names" if expected is _NAMES else "integers")


def _valid(value: Any, expected: Any) -> bool:
    if isinstance(expected, tuple) and all(isinstance(item, str) for item in expected):
        return value in expected
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(expected, (type, tuple)):
        return isinstance(value, expected) and not (isinstance(value, bool) and expected is int)
    if expected == _ANY_MAPPING:
        return isinstance(value, dict)
    return expected(value)


def validate(params: Mapping[str, Any], schema: Mapping[str, Any] = SCHEMA, prefix: str = "") -> None:
    """Raise :class:`ParamsError` for an unknown key or a value of the wrong type."""
    for key, value in params.items():
        where = f"{prefix}{key}"
        if key not in schema:
            raise ParamsError(f"params.yaml: unknown key {where!r}; allowed here: {', '.join(schema)}")
        expected = schema[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise ParamsError(f"params.yaml: {where!r} must be a mapping, not {value!r}")
            validate(value, expected, where + ".")
        elif not _valid(value, expected):
            raise ParamsError(f"params.yaml: {where!r} = {value!r} is invalid; expected {_describe(expected)}")


@dataclass(frozen=True)
class Params:
    """The validated parameters, with the active profile's section at hand."""

    raw: dict[str, Any]

    @property
    def profile(self) -> str:
        return self.raw["profile"]

    @property
    def active(self) -> dict[str, Any]:
        return self.raw["profiles"][self.profile]

    def task(self, task: str) -> dict[str, Any]:
        """The task's global section merged with the active profile's section for it."""
        return {**self.raw.get(task, {}), **self.active.get(task, {})}

    def method(self, name: str, profile_override: bool = True) -> dict[str, Any]:
        """A method's hyper-parameters: the global block, updated by the active profile's override unless
        ``profile_override`` is false (official checkpoints always have the global, published architecture)."""
        own = dict(self.raw.get("methods", {}).get(name) or {})
        if profile_override:
            own.update(self.active.get("methods", {}).get(name) or {})
        own.pop("note", None)
        base = own.pop(VARIANT_KEY, None)
        return {**self.method(base, profile_override), **own} if base else own

    def method_class_name(self, name: str) -> str:
        """The registered method behind ``name``: itself, or the model an ablation variant is built on."""
        return (self.raw.get("methods", {}).get(name) or {}).get(VARIANT_KEY, name)

    def cell_active(self, task: str, method: str, setting: int | str) -> bool:
        """Whether the active profile computes the cell (other cells of the matrix write a skip marker); a
        correspondence cell's setting is its training set."""
        if task == CORRESPONDENCE:
            section = self.correspondence
            return method in section.get("methods", []) and setting in section.get("cells", {})
        section = self.task(task)
        return method in section.get("methods", []) and setting in section.get(SETTINGS[task], [])

    @property
    def correspondence(self) -> dict[str, Any]:
        """The active profile's correspondence section (a profile without one computes nothing)."""
        return dict(self.active.get(CORRESPONDENCE, {}))

    @property
    def fit(self) -> dict[str, Any]:
        return dict(self.active.get("fit", {}))

    def task_fit(self, task: str) -> dict[str, Any]:
        """The profile's fit block updated by the task's own ``fit`` overrides."""
        return {**self.fit, **self.active.get(task, {}).get("fit", {})}

    @property
    def device(self) -> str:
        wanted = self.active.get("device", "cpu")
        if wanted == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return wanted

    @property
    def mirror(self) -> str | None:
        """The local mirror: ``N3BENCH_MIRROR`` wins over the params key (not a tracked param: same bytes)."""
        return os.environ.get("N3BENCH_MIRROR") or self.raw.get("mirror")


def _require_subset(names: list, allowed: list, where: str, source: str) -> None:
    for name in names:
        if name not in allowed:
            raise ParamsError(
                f"params.yaml: {where} names {name!r}, which is not in {source} ({', '.join(map(str, allowed))})"
            )


def _check_folders(folders: dict[str, Any]) -> None:
    for name, entry in folders.items():
        where = f"params.yaml: folders.{name}"
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise ParamsError(f"{where} must be a mapping with a 'path' (the folder of images)")
        if entry.get("color", "gray") not in FOLDER_COLORS:
            raise ParamsError(f"{where}.color = {entry.get('color')!r} is invalid; expected one of "
                              f"{', '.join(FOLDER_COLORS)}")


def _check_names(params: dict[str, Any]) -> None:
    """Cross-references: every name a profile uses must be declared where the DVC matrix reads it."""
    profile = params["profile"]
    active = params["profiles"][profile]
    datasets = active.get("datasets", [])
    _require_subset(datasets, params.get("datasets", []), f"profiles.{profile}.datasets", "the top-level datasets")
    _require_subset(params.get("benchmarks", []), list(BENCHMARKS), "benchmarks", "the scripts in benchmarks/")
    _require_subset(active.get("benchmarks", []), params.get("benchmarks", []), f"profiles.{profile}.benchmarks",
                    "the top-level benchmarks")
    for task, axis in SETTINGS.items():
        section, where = active.get(task, {}), f"profiles.{profile}.{task}"
        for key in ("testsets", "trainsets"):
            _require_subset(section.get(key, []), datasets, f"{where}.{key}", f"profiles.{profile}.datasets")
        _require_subset(section.get("methods", []), params.get(task, {}).get("methods", []), f"{where}.methods",
                        f"{task}.methods")
        _require_subset(section.get(axis, []), params.get(task, {}).get(axis, []), f"{where}.{axis}",
                        f"{task}.{axis}")
        _require_subset(params.get(task, {}).get("methods", []), list(params.get("methods", {})),
                        f"{task}.methods", "the methods section (each method needs an entry there)")


def _check_correspondence(params: dict[str, Any]) -> None:
    """The correspondence section's cross-references, as :func:`_check_names` does for the image tasks."""
    profile = params["profile"]
    declared, section = params.get(CORRESPONDENCE, {}), params["profiles"][profile].get(CORRESPONDENCE, {})
    where = f"profiles.{profile}.{CORRESPONDENCE}"
    overlap = set(declared.get("datasets", [])) & set(params.get("datasets", []))
    if overlap:
        raise ParamsError(f"params.yaml: {', '.join(sorted(overlap))} named both in datasets (images) and in "
                          f"{CORRESPONDENCE}.datasets (two-view pairs); a name may be only one of them")
    _require_subset(declared.get("methods", []), list(params.get("methods", {})), f"{CORRESPONDENCE}.methods",
                    "the methods section (each method needs an entry there)")
    _require_subset(section.get("methods", []), declared.get("methods", []), f"{where}.methods",
                    f"{CORRESPONDENCE}.methods")
    _require_subset(section.get("datasets", []), declared.get("datasets", []), f"{where}.datasets",
                    f"{CORRESPONDENCE}.datasets")
    cells = section.get("cells", {})
    _require_subset(list(cells), declared.get("trainsets", []), f"{where}.cells", f"{CORRESPONDENCE}.trainsets")
    for trainset, tests in cells.items():
        _require_subset([trainset, *tests], section.get("datasets", []), f"{where}.cells.{trainset}",
                        f"{where}.datasets")


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read, validate and wrap ``params.yaml``."""
    if not path.exists():
        raise ParamsError(f"{path} not found: run n3bench from the repository root")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must hold a mapping at the top level")
    validate(raw)
    for required in ("profile", "profiles", "datasets"):
        if required not in raw:
            raise ParamsError(f"params.yaml: the key {required!r} is missing")
    if raw["profile"] not in raw["profiles"]:
        raise ParamsError(f"params.yaml: profile {raw['profile']!r} has no section under 'profiles'")
    _check_folders(raw.get("folders") or {})
    _check_names(raw)
    _check_correspondence(raw)
    return Params(raw)
