"""DVC stage ``fit_<task>@<method>-<setting>``: train, import official weights, or record a classical method."""

from __future__ import annotations

import shutil

import click

from pipeline import paths
from pipeline.config import SETTINGS, load_params
from stages._common import SKIP_NOTE, clean_errors


@click.command()
@click.argument("task", type=click.Choice(sorted(SETTINGS)))
@click.argument("method")
@click.argument("setting", type=int)
@clean_errors
def main(task: str, method: str, setting: int) -> None:
    params = load_params()
    out = paths.fit_dir(params.profile, task, method, setting)
    shutil.rmtree(out, ignore_errors=True)
    if not params.cell_active(task, method, setting):
        out.mkdir(parents=True)
        (out / SKIP_NOTE).write_text(f"{method}-{setting} is not computed by profile {params.profile!r}\n")
        click.echo(f"fit {task} {method}-{setting}: not in profile {params.profile!r}, skipped")
        return
    from pipeline.fit import fit_cell

    metadata = fit_cell(params, task, method, setting, out)
    click.echo(f"fit {task} {method}-{setting}: {metadata.get('source')} → {out}")


if __name__ == "__main__":
    main()
