"""Where every stage reads and writes, relative to the repository root. Outputs are keyed by profile so that
a smoke run never overwrites the committed results of the ``pretrained`` profile."""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
RUNS = Path("runs")
REPORTS = Path("reports")


def prepared(dataset: str) -> Path:
    return DATA / "prepared" / dataset


def correspondence(dataset: str) -> Path:
    """A prepared two-view dataset (Parquet shards); kept apart from the image sets, which stages depend on whole."""
    return DATA / "correspondence" / dataset


def raw() -> Path:
    """Verified downloads, kept between runs (not a DVC output)."""
    return DATA / "raw"


def cell(task: str, method: str, setting: int | str) -> str:
    return f"{method}-{setting}"


def fit_dir(profile: str, task: str, method: str, setting: int | str) -> Path:
    return RUNS / profile / "fit" / task / cell(task, method, setting)


def official_dir(task: str, method: str, setting: int | str) -> Path:
    """Official checkpoints converted on demand by ``n3bench evaluate --weights official`` (not a DVC output)."""
    return RUNS / "official" / task / cell(task, method, setting)


def eval_dir(profile: str, task: str, method: str, setting: int | str) -> Path:
    return RUNS / profile / "eval" / task / cell(task, method, setting)


def metrics_file(profile: str, task: str, method: str, setting: int | str) -> Path:
    return REPORTS / "metrics" / profile / task / f"{cell(task, method, setting)}.json"


def benchmark_file(profile: str, name: str) -> Path:
    """The rows of one timing benchmark (``benchmarks/<name>.py``) run by the profile."""
    return REPORTS / "benchmarks" / profile / f"{name}.json"


def scratch(profile: str, kind: str, key: str) -> Path:
    """Resumable state (training checkpoints, per-image caches): never a DVC output, so never deleted by it."""
    return RUNS / profile / "scratch" / kind / key


def report_dir(profile: str) -> Path:
    return REPORTS / profile
