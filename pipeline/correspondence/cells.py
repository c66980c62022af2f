"""The pipeline's correspondence cells: prepare a dataset, fit a matcher on a training set, evaluate it.

A cell is (method, training set). Its fit trains a learned matcher on the set's ``train`` split with the shared
loop of :mod:`pipeline.train` (classical ones only record their settings); its evaluation runs the matcher on the
``test`` split of every test set the profile lists for the training set (``correspondence.cells``), writing
per-pair rows and, for the figure of the report, the first pair of each test set with its predicted labels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import paths
from pipeline.cells import EXAMPLES
from pipeline.config import CORRESPONDENCE, Params
from pipeline.correspondence.data import PrepareOptions, load_pairs, prepare
from pipeline.correspondence.evaluate import PER_PAIR, evaluate
from pipeline.correspondence.methods import MATCHERS, LearnedMatcher, Matcher, load_matcher
from pipeline.correspondence.synthetic import SyntheticConfig
from pipeline.correspondence.tables import Pair, drop_non_finite, write_pairs
from pipeline.correspondence.training import CorrespondenceTraining, cnet_schedule, fit
from pipeline.data.download import mirror_root
from pipeline.data.images import atomic_write_bytes
from pipeline.evaluate import cell_key
from pipeline.train import MANIFEST_FILE, MODEL_FILE

PREDICTED = "predicted.parquet"


def prepare_options(params: Params) -> PrepareOptions:
    """How the profile builds its datasets: the seed and the synthetic split sizes and matches per pair."""
    synthetic = dict(params.correspondence.get("synthetic", {}))
    config = SyntheticConfig(n_matches=synthetic.pop("n_matches")) if "n_matches" in synthetic else SyntheticConfig()
    counts = synthetic or PrepareOptions().synthetic_pairs
    return PrepareOptions(seed=params.raw.get("seed", 0), synthetic_pairs=counts, synthetic=config)


def prepare_dataset(params: Params, dataset: str, out: Path) -> dict[str, Any]:
    """Build ``dataset`` into ``out`` (the paper's dumps are downloaded first, from the mirror if set)."""
    return prepare(dataset, out, raw=paths.raw(), mirror=mirror_root(params.mirror), options=prepare_options(params))


def _pairs(dataset: str, split: str, limit: int | None = None) -> list[Pair]:
    """A split of a dataset the prepare stage built (never built here: that folder is another stage's output)."""
    folder = paths.correspondence(dataset)
    if not (folder / split).is_dir():
        raise FileNotFoundError(f"{folder / split} is missing: run the prepare_correspondence stage first (dvc repro)")
    return load_pairs(dataset, split, folder=folder, max_pairs=limit)


def _training(params: Params, method: str, trainset: str) -> CorrespondenceTraining:
    fit = params.correspondence.get("fit", {})
    return CorrespondenceTraining(
        _pairs(trainset, "train"), _pairs(trainset, "val", fit.get("val_pairs")), method, params.method(method),
        batch_size=fit.get("batch_size", 32), max_matches=fit.get("max_matches"),
        essential_start=fit.get("essential_start", 20_000), essential_weight=fit.get("essential_weight", 0.1),
    )


def fit_cell(params: Params, method: str, trainset: str, out: Path) -> dict[str, Any]:
    """Train ``method`` on ``trainset`` into ``out/model.pt``, or record a classical method's settings."""
    metadata = {"method": method, "task": CORRESPONDENCE, "trainset": trainset, "profile": params.profile,
                "hparams": params.method(method)}
    out.mkdir(parents=True, exist_ok=True)
    if not issubclass(MATCHERS.get(method), LearnedMatcher):
        metadata["source"] = "classical"
        atomic_write_bytes(out / MANIFEST_FILE, json.dumps(metadata, indent=2).encode())
        return metadata
    settings, seed = params.correspondence.get("fit", {}), params.raw.get("seed", 0)
    config = {**metadata, "fit": settings, "data": params.correspondence.get("synthetic"), "seed": seed,
              "device": params.device}
    scratch = paths.scratch(params.profile, "fit", f"{CORRESPONDENCE}-{method}-{trainset}-{cell_key(config)}")
    schedule = cnet_schedule(settings["steps"], settings.get("lr", 1e-3), seed, settings.get("validate_every", 5000),
                             settings.get("checkpoint_every", 1000))
    fit(_training(params, method, trainset), schedule, scratch, params.device, out)
    return metadata | {"source": "trained"}


def load_cell_matcher(params: Params, method: str, trainset: str) -> Matcher:
    """The cell's matcher with the task's pose protocol (a learned one with its fitted weights)."""
    protocol = params.raw.get(CORRESPONDENCE, {}).get("protocol", {})
    settings: dict[str, Any] = {"threshold": protocol.get("ransac_threshold", 0.01), "seed": params.raw.get("seed", 0)}
    weights = None
    if issubclass(MATCHERS.get(method), LearnedMatcher):
        settings["protocol"] = protocol.get("pose", "ransac")
        weights = paths.fit_dir(params.profile, CORRESPONDENCE, method, trainset) / MODEL_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing: run the fit stage of this cell first (dvc repro)")
    return load_matcher(method, weights, params.device, **settings)


def write_example(matcher: Matcher, pair: Pair, out: Path) -> None:
    """The pair (as a one-pair split) and its predicted inlier mask, for the report's match figure."""
    pair, _ = drop_non_finite(pair)
    write_pairs([pair], out)
    predicted = pd.DataFrame({"predicted": matcher.predict(pair).inliers.astype(bool)})
    predicted.to_parquet(out / PREDICTED, index=False)


def evaluate_cell(params: Params, method: str, trainset: str, out: Path) -> dict[str, Any]:
    """Evaluate the cell on each of its test sets; writes ``out/per_pair.parquet`` and ``out/examples/``.

    Returns ``{test set: summary}`` (mAP@5/10/20, inlier precision/recall/F1, failure and degeneracy counts).
    """
    matcher = load_cell_matcher(params, method, trainset)
    frames, summaries = [], {}
    for dataset in params.correspondence["cells"][trainset]:
        pairs = _pairs(dataset, "test", params.correspondence.get("max_pairs"))
        rows, summaries[dataset] = evaluate(matcher, pairs, method, dataset)
        frames.append(rows.assign(train=trainset))
        write_example(matcher, pairs[0], out / EXAMPLES / dataset)
    pd.concat(frames, ignore_index=True).to_parquet(out / PER_PAIR, index=False)
    return summaries
