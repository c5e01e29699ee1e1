"""Turn expected failures into one-line messages and exit codes (never a traceback for bad input)."""
from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from ..spec.errors import SpecError

F = TypeVar("F", bound=Callable[..., Any])


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Error types that mean bad input, imported lazily so torch-free commands stay torch-free."""
    found: list[type[BaseException]] = [SpecError, FileExistsError, FileNotFoundError]
    for module, name in [("slimspec.weights", "WeightsError"), ("slimspec.pruning.criteria.base", "PruneError"),
                         ("slimspec.data.registry", "DataError")]:
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, name):
            found.append(getattr(mod, name))
    return tuple(found)


def report_errors(func: F) -> F:
    """Print located errors one per line to stderr and exit 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except SpecError as exc:
            for line in exc.lines():
                click.echo(line, err=True)
            sys.exit(1)
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is an input error
            if isinstance(exc, _expected_errors()) or type(exc).__name__ in ("ValueError",):
                click.echo(f"error: {exc}", err=True)
                sys.exit(1)
            raise

    return wrapper  # type: ignore[return-value]
