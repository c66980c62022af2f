"""DVC stage ``evaluate_<task>@<method>-<setting>``: per-image rows (Parquet) and the cell's metrics JSON."""

from __future__ import annotations

import json
import shutil

import click

from pipeline import paths
from pipeline.config import SETTINGS, load_params
from pipeline.data.images import atomic_write_bytes
from stages._common import clean_errors


@click.command()
@click.argument("task", type=click.Choice(sorted(SETTINGS)))
@click.argument("method")
@click.argument("setting", type=int)
@clean_errors
def main(task: str, method: str, setting: int) -> None:
    params = load_params()
    metrics = paths.metrics_file(params.profile, task, method, setting)
    out = paths.eval_dir(params.profile, task, method, setting)
    shutil.rmtree(out, ignore_errors=True)
    if not params.cell_active(task, method, setting):
        out.mkdir(parents=True)
        summary = {"profile": params.profile, "skipped": f"{method}-{setting} is not in this profile"}
        click.echo(f"evaluate {task} {method}-{setting}: not in profile {params.profile!r}, skipped")
    else:
        from pipeline.cells import evaluate_cell
        from pipeline.evaluate import summarise

        rows = evaluate_cell(params, task, method, setting, out)
        summary = {"profile": params.profile, "device": params.device, **summarise(rows)}
        click.echo(json.dumps(summary, indent=1))
    atomic_write_bytes(metrics, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())


if __name__ == "__main__":
    main()
