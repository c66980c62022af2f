"""DVC stage ``report``: paper vs measured tables, paired comparisons and figures of the active profile."""

from __future__ import annotations

import click

from pipeline.config import load_params
from stages._common import clean_errors


@click.command()
@clean_errors
def main() -> None:
    from pipeline.report import build_report_from_params

    out = build_report_from_params(load_params())
    click.echo(f"report: {out / 'README.md'}")


if __name__ == "__main__":
    main()
