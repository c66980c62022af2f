"""Run one evaluation cell end to end: the method with its fitted weights on the profile's test sets."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pandas as pd

from pipeline import paths
from pipeline.config import Params
from pipeline.data.download import sha256_file
from pipeline.evaluate import TASKS, Cell, cell_key
from pipeline.fit import MODEL_FILE, load_fitted, make_method, official_weights
from pipeline.methods import Method

PER_IMAGE = "per_image.parquet"
EXAMPLES = "examples"
OFFICIAL = "official"


def method_source_files(method: Method) -> list[Path]:
    """The source of the method's module and of the ``models`` modules whose names it imports."""
    module = sys.modules[type(method).__module__]
    names = {module.__name__} | {
        getattr(value, "__module__", None) or getattr(value, "__name__", "") for value in vars(module).values()
    }
    used = (sys.modules[name] for name in names if name.startswith("models.") and name in sys.modules)
    return sorted(Path(used_module.__file__) for used_module in used)


def method_fingerprint(method: Method) -> str:
    """A digest of :func:`method_source_files`: cached per-image results are recomputed when the method's code
    changes (and only then)."""
    digest = hashlib.sha256()
    for path in method_source_files(method):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def resolve_weights(params: Params, task: str, method: str, setting: int, weights: str | None) -> Path:
    """The checkpoint a learned method uses: the profile's fit output (``None``), the converted official
    checkpoint (``"official"``) or a file written by n3bench."""
    if weights is None:
        return paths.fit_dir(params.profile, task, method, setting) / MODEL_FILE
    if weights == OFFICIAL:
        return official_weights(params, task, method, setting)
    return Path(weights)


def evaluate_cell(
    params: Params,
    task_name: str,
    method_name: str,
    setting: int,
    out: Path | None,
    weights: str | None = None,
    testsets: list[str] | None = None,
) -> pd.DataFrame:
    """Evaluate a cell and return its per-image rows; with ``out`` also write them and example outputs there."""
    section = params.task(task_name)
    task = TASKS[task_name](section.get("protocol", {}), params.raw.get("seed", 0))
    official = weights == OFFICIAL or (weights is None and params.task_fit(task_name).get("mode") == "official")
    method = make_method(method_name, params, task_name, official=official)
    checkpoint = resolve_weights(params, task_name, method_name, setting, weights)
    load_fitted(method, checkpoint, setting, params.device)
    names = testsets if testsets is not None else section.get("testsets", [])
    config = {"task": task_name, "method": method_name, "setting": setting, "hparams": method.hparams,
              "protocol": task.protocol, "seed": task.seed, "max_images": section.get("max_images"),
              "weights_sha256": sha256_file(checkpoint) if checkpoint.is_file() else None,
              "code": method_fingerprint(method)}
    cache = paths.scratch(params.profile, "eval", f"{task_name}-{method_name}-{setting}-{cell_key(config)}")
    cell = Cell(task, method, setting, params.profile, cache, out / EXAMPLES if out else None,
                batch=method.batch_size)
    rows = cell.run([(name, paths.prepared(name)) for name in names], section.get("max_images"))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        rows.to_parquet(out / PER_IMAGE, index=False)
    return rows
