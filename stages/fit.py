"""DVC stage ``fit_<task>@<method>-<setting>``: train, import official weights, or record a classical method.

The setting is σ or the scale for the image tasks, and the training set for ``correspondence``."""

from __future__ import annotations

import shutil

import click

from pipeline import paths
from pipeline.config import CORRESPONDENCE, load_params
from stages._common import SKIP_NOTE, cell_command, parse_setting


@cell_command
def main(task: str, method: str, setting: str) -> None:
    params = load_params()
    value = parse_setting(task, setting)
    out = paths.fit_dir(params.profile, task, method, value)
    shutil.rmtree(out, ignore_errors=True)
    if not params.cell_active(task, method, value):
        out.mkdir(parents=True)
        (out / SKIP_NOTE).write_text(f"{method}-{setting} is not computed by profile {params.profile!r}\n")
        click.echo(f"fit {task} {method}-{setting}: not in profile {params.profile!r}, skipped")
        return
    if task == CORRESPONDENCE:
        from pipeline.correspondence.cells import fit_cell as fit_correspondence

        metadata = fit_correspondence(params, method, setting, out)
    else:
        from pipeline.fit import fit_cell

        metadata = fit_cell(params, task, method, value, out)
    click.echo(f"fit {task} {method}-{setting}: {metadata.get('source')} → {out}")


if __name__ == "__main__":
    main()
