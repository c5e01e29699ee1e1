"""Turn expected failures into one-line messages and exit codes (never a traceback for bad input).

Every input problem raises a :class:`~slimspec.errors.SlimspecError` (spec, plan, weights,
prune, data, training, import, export, output errors) or an ``OSError`` from the file
system; those print as ``error: ...`` (or, for specs, one located line per problem) and exit
1. Anything else is a bug: it keeps its traceback, followed by a line asking to report it.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import click

from ..errors import SlimspecError

F = TypeVar("F", bound=Callable[..., Any])
BUG_HINT = "slimspec: this is a bug; please report it with the command line and the traceback above"


def os_error_line(exc: OSError) -> str:
    """``error: PATH: reason`` for a file-system error (no errno prefix)."""
    where = exc.filename if exc.filename is not None else ""
    reason = exc.strerror or str(exc)
    return f"error: {where}: {reason}" if where else f"error: {reason}"


INPUT_ERRORS = (SlimspecError, OSError)


def exit_with(exc: SlimspecError | OSError, status: int = 1) -> NoReturn:
    """Print an input error as its located one-liners on stderr and exit with ``status``."""
    lines = exc.lines() if isinstance(exc, SlimspecError) else [os_error_line(exc)]
    for line in lines:
        click.echo(line, err=True)
    sys.exit(status)


def report_errors(func: F) -> F:
    """Print located errors one per line to stderr and exit 1; bugs keep their traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except INPUT_ERRORS as exc:
            exit_with(exc)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt, SystemExit):
            raise
        except Exception:
            import traceback

            traceback.print_exc()
            click.echo(BUG_HINT, err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
