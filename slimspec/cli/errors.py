"""Turn expected failures into one-line messages and exit codes (never a traceback for bad input).

Exit codes, the same for every command:

* 0 (``EXIT_OK``): done (``diff``: the specs are equal);
* 1 (``EXIT_INPUT``): bad input. Every input problem raises a
  :class:`~slimspec.errors.SlimspecError` (spec, plan, weights, prune, data, training, import,
  export, output errors) or an ``OSError`` from the file system; those print as ``error: ...``
  (or, for specs, one located line per problem);
* 2 (``EXIT_USAGE``): a usage error, click's convention (an unknown option, a missing
  argument, a bad option value); ``diff`` also exits 2 when a file cannot be read, as diff(1);
* 70 (``EXIT_BUG``, sysexits' EX_SOFTWARE): anything else is a bug: it keeps its traceback,
  followed by a line asking to report it;
* 141 (``EXIT_PIPE``, 128 + SIGPIPE): stdout was closed by the reader (``slimspec info X | head``);
  nothing more is printed.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import click

from ..errors import SlimspecError, one_line

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
BUG_HINT = "slimspec: this is a bug; please report it with the command line and the traceback above"

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2  # click.UsageError's own code
EXIT_BUG = 70  # EX_SOFTWARE (sysexits.h): an internal error, never bad input
EXIT_PIPE = 128 + 13  # what a shell reports for a writer stopped by SIGPIPE


def report_bug(prefix: str = "") -> None:
    """Print the exception being handled with its traceback, then the line asking to report it."""
    import traceback

    traceback.print_exc()
    click.echo(f"{prefix}{BUG_HINT}", err=True)


def pipe_closed(status: int = EXIT_PIPE) -> NoReturn:
    """stdout's reader went away (``slimspec info X | head``): stop quietly, exit ``status``.

    stdout is pointed at /dev/null first, so the interpreter's final flush cannot fail again.
    """
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (a test runner's buffer)
        pass
    sys.exit(status)


def os_error_line(exc: OSError) -> str:
    """``error: PATH: reason`` for a file-system error (no errno prefix)."""
    where = exc.filename if exc.filename is not None else ""
    reason = exc.strerror or str(exc)
    return one_line(f"error: {where}: {reason}" if where else f"error: {reason}")


INPUT_ERRORS = (SlimspecError, OSError)


def exit_with(exc: SlimspecError | OSError, status: int = EXIT_INPUT) -> NoReturn:
    """Print an input error as its located one-liners on stderr and exit with ``status``."""
    lines = exc.lines() if isinstance(exc, SlimspecError) else [os_error_line(exc)]
    for line in lines:
        click.echo(line, err=True)
    sys.exit(status)


def guarded(call: Callable[[], T]) -> T:
    """Run ``call`` mapping what escapes it to an exit code: a closed stdout exits 141 quietly, input
    errors print their one-liners and exit 1, click's own exits pass, anything else is a bug (exit 70)."""
    try:
        return call()
    except BrokenPipeError:
        pipe_closed()
    except INPUT_ERRORS as exc:
        exit_with(exc)
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, KeyboardInterrupt, SystemExit):
        raise
    except Exception:
        report_bug()
        sys.exit(EXIT_BUG)


def report_errors(func: F) -> F:
    """Print located errors one per line to stderr and exit 1; bugs keep their traceback (exit 70)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return guarded(lambda: func(*args, **kwargs))

    return wrapper  # type: ignore[return-value]
