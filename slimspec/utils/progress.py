"""Progress for long work, on stderr only (stdout carries ``--json`` output).

One object, three ways to use it::

    with progress(total=len(slots), desc="sensitivity") as bar:   # context manager
        for slot in slots:
            ...
            bar.update(1, status=f"{slot}: 91.2%")

    for batch in progress(loader, desc="eval"):                    # wrap an iterable
        ...

    def search(..., on_step: ProgressCallback = no_progress):      # callback form for a library
        on_step(1, f"threshold {t:.3g} -> macs {m:.2f}")          # a Progress *is* a callback

On a terminal (stderr is a tty) it draws a tqdm bar. Otherwise (logs, CI, pipes) it writes a
one-line status at most every ``interval`` seconds (default 10), and a final line if it wrote
any (work shorter than ``interval`` stays silent, so piped ``--json`` runs stay clean)::

    sensitivity: 3/8 (38%) 12.1s elapsed, ETA 20.2s | cfg[2]: 91.2%
    sensitivity: done 8/8 in 31.9s

``enabled=False`` (the CLI's ``--quiet``) writes nothing at all.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, Protocol, TypeVar

T = TypeVar("T")

DEFAULT_INTERVAL = 10.0


Status = str | Callable[[], str]  # a status text, or a function computing it when shown


def _text(status: Status | None) -> str | None:
    return status() if callable(status) else status


class ProgressCallback(Protocol):
    """What library code accepts to report steps: ``callback(n=1, status=None)``."""

    def __call__(self, n: int = 1, status: Status | None = None) -> None: ...


def no_progress(n: int = 1, status: Status | None = None) -> None:
    """The do-nothing :class:`ProgressCallback` (a default for library functions)."""


def format_seconds(seconds: float) -> str:
    """``4.2s``, ``3m05s``, ``1h02m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """A progress reporter: tqdm bar on a terminal, rate-limited status lines otherwise.

    ``stream`` defaults to ``sys.stderr``; ``tty`` overrides the terminal check; ``clock``
    (seconds, monotonic) is injectable for tests. Calling the object is ``update``.
    """

    def __init__(self, total: int | None = None, desc: str = "", enabled: bool = True, *,
                 iterable: Iterable[Any] | None = None, unit: str = "it", interval: float = DEFAULT_INTERVAL,
                 stream: IO[str] | None = None, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.total = total
        self.desc = desc
        self.enabled = enabled
        self.iterable = iterable
        self.unit = unit
        self.interval = interval
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.n = 0
        self.status: Status | None = None
        self.closed = False
        self._start = clock()
        self._last = self._start
        self._printed = False
        self._bar = None
        if enabled:
            is_tty = tty if tty is not None else _isatty(self.stream)
            if is_tty:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=desc or None, unit=unit, file=self.stream, leave=False,
                                 dynamic_ncols=True)

    # -- reporting -------------------------------------------------------------------------
    def update(self, n: int = 1, status: Status | None = None) -> None:
        """Count ``n`` more steps done; ``status`` is a short text shown after the count.

        ``status`` may be a function returning the text: it is called only when something is
        drawn (e.g. ``lambda: f"loss {loss.item():.4f}"`` syncs a GPU only when printed).
        """
        self.n += n
        if status is not None:
            self.status = status
        if not self.enabled or self.closed:
            return
        if self._bar is not None:
            if status is not None:
                self._bar.set_postfix_str(_text(status), refresh=False)
            self._bar.update(n)
            return
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            self._write(self.line(now))

    __call__ = update

    def set_status(self, status: str) -> None:
        """Change the status text without counting a step."""
        self.update(0, status)

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """Clear a terminal bar while other output is printed, then redraw it (no-op otherwise)."""
        if self._bar is None or self.closed:
            yield
            return
        with self._bar.external_write_mode(file=self.stream):
            yield

    def line(self, now: float | None = None) -> str:
        """The one-line status as it would be printed now."""
        now = self.clock() if now is None else now
        elapsed = now - self._start
        parts = [f"{self.desc}: " if self.desc else ""]
        if self.total:
            parts.append(f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%) {format_seconds(elapsed)} elapsed")
            if 0 < self.n < self.total:
                parts.append(f", ETA {format_seconds(elapsed * (self.total - self.n) / self.n)}")
        else:
            parts.append(f"{self.n} {self.unit} {format_seconds(elapsed)} elapsed")
        status = _text(self.status)
        if status:
            parts.append(f" | {status}")
        return "".join(parts)

    def close(self) -> None:
        """Finish: close the bar, or write the final line (non-terminal)."""
        if self.closed:
            return
        self.closed = True
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            return
        if not self._printed:
            return
        elapsed = self.clock() - self._start
        count = f"{self.n}/{self.total}" if self.total else f"{self.n} {self.unit}"
        status = _text(self.status)
        tail = f" | {status}" if status else ""
        self._write(f"{self.desc + ': ' if self.desc else ''}done {count} in {format_seconds(elapsed)}{tail}")

    def _write(self, text: str) -> None:
        self._printed = True
        self.stream.write(text + "\n")
        self.stream.flush()

    # -- protocols ---------------------------------------------------------------------------
    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("Progress(total=...) is not iterable; pass an iterable to progress()")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             enabled: bool = True, **kwargs: Any) -> Progress:
    """Make a :class:`Progress`: iterate it (wrapping ``iterable``) or use it as a context manager."""
    return Progress(total=total, desc=desc, enabled=enabled, iterable=iterable, **kwargs)


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
