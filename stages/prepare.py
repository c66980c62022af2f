"""DVC stages ``prepare@<dataset>`` and ``prepare_correspondence@<dataset>``: an image set's PNGs and manifest, or
a two-view dataset's Parquet shards; a skip note outside the profile."""

from __future__ import annotations

import shutil

import click

from pipeline import paths
from pipeline.config import CORRESPONDENCE, Params, load_params
from stages._common import SKIP_NOTE, clean_errors


def _prepare_images(params: Params, dataset: str) -> str:
    from pipeline.data.catalog import resolve
    from pipeline.data.download import mirror_root
    from pipeline.data.prepare import prepare

    entry = resolve(dataset, params.raw.get("folders"))
    manifest = prepare(entry, paths.prepared(dataset), raw=paths.raw(), mirror=mirror_root(params.mirror))
    return f"{len(manifest)} images → {paths.prepared(dataset)}"


def _prepare_pairs(params: Params, dataset: str) -> str:
    from pipeline.correspondence.cells import prepare_dataset

    manifest = prepare_dataset(params, dataset, paths.correspondence(dataset))
    return f"pairs per split {manifest.get('pairs') or manifest.get('counts')} → {paths.correspondence(dataset)}"


@click.command()
@click.argument("dataset")
@clean_errors
def main(dataset: str) -> None:
    params = load_params()
    pairs = dataset in params.raw.get(CORRESPONDENCE, {}).get("datasets", [])
    out = paths.correspondence(dataset) if pairs else paths.prepared(dataset)
    active = params.correspondence.get("datasets", []) if pairs else params.active.get("datasets", [])
    if dataset not in active:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        (out / SKIP_NOTE).write_text(f"{dataset} is not used by profile {params.profile!r}\n")
        click.echo(f"prepare {dataset}: not in profile {params.profile!r}, skipped")
        return
    click.echo(f"prepare {dataset}: {_prepare_pairs(params, dataset) if pairs else _prepare_images(params, dataset)}")


if __name__ == "__main__":
    main()
