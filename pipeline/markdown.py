"""The Markdown pieces both reports (images and correspondence) build their tables from."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

MISSING = "—"


def markdown_table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    """A Markdown table as lines, with a blank line after it."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def number(value: Any, spec: str = ".3f") -> str:
    """``value`` formatted with ``spec``, or :data:`MISSING` for None/NaN."""
    return MISSING if value is None or pd.isna(value) else format(value, spec)
