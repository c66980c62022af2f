"""DVC stage ``evaluate_<task>@<method>-<setting>``: per-image (per-pair) rows as Parquet and the cell's metrics
JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click

from pipeline import paths
from pipeline.config import CORRESPONDENCE, Params, load_params
from pipeline.data.images import atomic_write_bytes
from stages._common import cell_command, parse_setting


def _measure(params: Params, task: str, method: str, setting: int | str, out: Path) -> dict[str, Any]:
    """The cell's scores per test set (its rows go to ``out``)."""
    if task == CORRESPONDENCE:
        from pipeline.correspondence.cells import evaluate_cell as evaluate_correspondence

        return {"train": setting, **evaluate_correspondence(params, method, str(setting), out)}
    from pipeline.cells import evaluate_cell
    from pipeline.evaluate import summarise

    return summarise(evaluate_cell(params, task, method, int(setting), out))


@cell_command
def main(task: str, method: str, setting: str) -> None:
    params = load_params()
    value = parse_setting(task, setting)
    metrics = paths.metrics_file(params.profile, task, method, value)
    out = paths.eval_dir(params.profile, task, method, value)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if not params.cell_active(task, method, value):
        summary = {"profile": params.profile, "skipped": f"{method}-{setting} is not in this profile"}
        click.echo(f"evaluate {task} {method}-{setting}: not in profile {params.profile!r}, skipped")
    else:
        summary = {"profile": params.profile, "device": params.device, **_measure(params, task, method, value, out)}
        click.echo(json.dumps(summary, indent=1))
    atomic_write_bytes(metrics, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())


if __name__ == "__main__":
    main()
