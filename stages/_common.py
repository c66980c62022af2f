"""What every stage entry point shares: the cell arguments, the skip marker and clean error reporting."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from pipeline.config import CORRESPONDENCE, STAGE_TASKS
from pipeline.errors import UserError

#: the file a stage writes instead of its outputs when the active profile does not compute the cell
SKIP_NOTE = "SKIPPED"


def clean_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the user's failures (:class:`UserError`, a missing file) into ``error: <message>``, exit 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (UserError, FileNotFoundError) as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)

    return wrapper


def parse_setting(task: str, setting: str) -> int | str:
    """A cell's setting from the command line: the training set's name for correspondences, else σ or scale."""
    if task == CORRESPONDENCE:
        return setting
    try:
        return int(setting)
    except ValueError:
        raise click.BadParameter(f"{setting!r}: the {task} setting is an integer") from None


def cell_command(command: Callable[..., Any]) -> click.Command:
    """A stage entry point over one matrix cell: arguments ``TASK METHOD SETTING``, user errors in one line."""
    decorators = (clean_errors, click.argument("setting"), click.argument("method"),
                  click.argument("task", type=click.Choice(sorted(STAGE_TASKS))), click.command())
    for decorator in decorators:
        command = decorator(command)
    return command
