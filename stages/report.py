"""DVC stage ``report``: paper vs measured tables, paired comparisons and figures of the active profile."""

from __future__ import annotations

import click

from pipeline.config import load_params
from stages._common import clean_errors


@click.command()
@clean_errors
def main() -> None:
    params = load_params()
    bootstrap = params.raw.get("denoise", {}).get("bootstrap", {})
    from pipeline.report import build_report

    out = build_report(
        params.profile,
        resamples=bootstrap.get("resamples", 10000),
        confidence=bootstrap.get("confidence", 0.95),
        seed=params.raw.get("seed", 0),
    )
    click.echo(f"report {params.profile}: {out / 'README.md'}")


if __name__ == "__main__":
    main()
