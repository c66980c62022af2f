"""DVC stage ``benchmark@<name>``: one timing benchmark of ``benchmarks/`` when the profile lists it.

Its rows go to ``reports/benchmarks/<profile>/<name>.json`` (not cached, and never restored from the run cache:
timings belong to the machine and the moment). Other profiles write a ``skipped`` marker there.
"""

from __future__ import annotations

import importlib
import json

import click

from pipeline import paths
from pipeline.config import BENCHMARKS, load_params
from pipeline.data.images import atomic_write_bytes
from stages._common import clean_errors


@click.command()
@click.argument("name", type=click.Choice(BENCHMARKS))
@clean_errors
def main(name: str) -> None:
    params = load_params()
    out = paths.benchmark_file(params.profile, name)
    if name not in params.active.get("benchmarks", []):
        marker = {"profile": params.profile, "skipped": f"benchmark {name} is not in this profile"}
        atomic_write_bytes(out, (json.dumps(marker, indent=2) + "\n").encode())
        click.echo(f"benchmark {name}: not in profile {params.profile!r}, skipped")
        return
    importlib.import_module(f"benchmarks.{name}").main(["--json", str(out)])


if __name__ == "__main__":
    main()
