"""Speed and memory benchmarks (run as modules, e.g. ``python -m benchmarks.n3block``; see docs/performance.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.data.images import atomic_write_bytes


def publish(table: str, rows: list[dict[str, Any]], path: Path | None) -> None:
    """Print the Markdown table and, given ``path``, write the rows there as JSON."""
    print(table)
    if path is not None:
        atomic_write_bytes(path, (json.dumps(rows, indent=1) + "\n").encode())
