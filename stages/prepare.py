"""DVC stage ``prepare@<dataset>``: the dataset's PNGs and manifest, or a skip note outside the profile."""

from __future__ import annotations

import shutil

import click

from pipeline import paths
from pipeline.config import load_params
from pipeline.data.catalog import resolve
from pipeline.data.download import mirror_root
from pipeline.data.prepare import prepare
from stages._common import SKIP_NOTE, clean_errors


@click.command()
@click.argument("dataset")
@clean_errors
def main(dataset: str) -> None:
    params = load_params()
    out = paths.prepared(dataset)
    if dataset not in params.active.get("datasets", []):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        (out / SKIP_NOTE).write_text(f"{dataset} is not used by profile {params.profile!r}\n")
        click.echo(f"prepare {dataset}: not in profile {params.profile!r}, skipped")
        return
    entry = resolve(dataset, params.raw.get("folders"))
    manifest = prepare(entry, out, raw=paths.raw(), mirror=mirror_root(params.mirror))
    click.echo(f"prepare {dataset}: {len(manifest)} images → {out}")


if __name__ == "__main__":
    main()
