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
from typing import Any, TypeVar

import click

from ..errors import SlimspecError

F = TypeVar("F", bound=Callable[..., Any])
BUG_HINT = "slimspec: this is a bug; please report it with the command line and the traceback above"


def os_error_line(exc: OSError) -> str:
    """``error: PATH: reason`` for a file-system error (no errno prefix)."""
    where = exc.filename if exc.filename is not None else ""
    reason = exc.strerror or str(exc)
    return f"error: {where}: {reason}" if where else f"error: {reason}"


def report_errors(func: F) -> F:
    """Print located errors one per line to stderr and exit 1; bugs keep their traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SlimspecError as exc:
            for line in exc.lines():
                click.echo(line, err=True)
            sys.exit(1)
        except OSError as exc:
            click.echo(os_error_line(exc), err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt, SystemExit):
            raise
        except Exception:
            import traceback

            traceback.print_exc()
            click.echo(BUG_HINT, err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
