"""Click options several commands share, defined once so they parse and refuse alike.

``--threads`` is the same option on train, finetune, eval, demo, bench, prune, sensitivity
and export: its values are checked by the library's one rule
(:func:`slimspec.latency.timing.threads_problem`), read when the option is given (so
``slimspec validate`` stays free of the torch import).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click


class ThreadCount(click.ParamType):
    """``--threads N``: an integer >= 1 (the library's rule), or nothing for the default."""

    name = "N"

    def convert(self, value, param, ctx):  # type: ignore[override]
        if value is None or isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                self.fail(f"threads must be an integer >= 1, got {value!r}", param, ctx)
        from ..latency.timing import threads_problem

        if problem := threads_problem(number):
            self.fail(problem, param, ctx)
        return number


THREADS = ThreadCount()


def threads_option(help: str = "CPU threads for torch (default: torch's choice).") -> Callable:
    """The one ``--threads`` option (help text may say what the command uses the threads for)."""
    return click.option("--threads", type=THREADS, help=help)


@contextmanager
def using_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` torch threads (restored after); without them, torch is not imported."""
    if threads is None:
        yield
        return
    from ..latency.timing import torch_threads

    with torch_threads(threads):
        yield


class PositiveSeconds(click.ParamType):
    """A finite number of seconds > 0 (``bench --min-run-time``)."""

    name = "SECONDS"

    def convert(self, value, param, ctx):  # type: ignore[override]
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            self.fail(f"expected a finite number of seconds > 0, got {value!r}", param, ctx)
        return seconds


SECONDS = PositiveSeconds()


class RoundTo(click.ParamType):
    """``--round-to N`` (an integer >= 1) or ``--round-to auto`` (the multiple whose network runs fastest here)."""

    name = "N|auto"

    def convert(self, value, param, ctx):  # type: ignore[override]
        if isinstance(value, int) and not isinstance(value, bool) or str(value).strip() == "auto":
            return value if isinstance(value, int) else "auto"
        try:
            return int(str(value).strip())
        except ValueError:
            self.fail(f"expected an integer >= 1 or 'auto', got {value!r}", param, ctx)


ROUND_TO = RoundTo()
