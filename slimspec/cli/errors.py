"""Turn expected failures into one-line messages and exit codes (never a traceback for bad input).

Every input problem in slimspec raises a ``ValueError`` subclass (SpecError, WeightsError,
PruneError, DataError) or a file error; those print as ``error: ...`` (or, for specs, one
located line per problem) and exit 1. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from ..spec.errors import SpecError

F = TypeVar("F", bound=Callable[..., Any])
INPUT_ERRORS = (ValueError, FileExistsError, FileNotFoundError, IsADirectoryError, PermissionError)


def report_errors(func: F) -> F:
    """Print located errors one per line to stderr and exit 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SpecError as exc:
            for line in exc.lines():
                click.echo(line, err=True)
            sys.exit(1)
        except INPUT_ERRORS as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]
