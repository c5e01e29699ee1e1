"""slimspec.utils.progress: non-terminal status lines, rate limiting (injected clock), quiet mode."""
from __future__ import annotations

import io

import pytest

from slimspec.utils.progress import Progress, format_seconds, no_progress, progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(total=4, desc="work", enabled=True, interval=10.0):
    stream, clock = io.StringIO(), Clock()
    bar = progress(total=total, desc=desc, enabled=enabled, stream=stream, clock=clock, interval=interval, tty=False)
    return bar, stream, clock


def test_non_tty_lines_are_rate_limited_and_final_line_written():
    bar, stream, clock = make()
    with bar:
        clock.now += 3
        bar.update(1, status="cfg[0]")
        assert stream.getvalue() == ""  # under the interval: nothing yet
        clock.now += 7
        bar.update(1, status="cfg[1]: 91.2%")
        clock.now += 1
        bar.update(1)  # 1 s after the last line: suppressed
        clock.now += 10
        bar.update(1)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "work: 2/4 (50%) 10.0s elapsed, ETA 10.0s | cfg[1]: 91.2%",
        "work: 4/4 (100%) 21.0s elapsed | cfg[1]: 91.2%",
        "work: done 4/4 in 21.0s | cfg[1]: 91.2%",
    ]


def test_a_status_function_runs_only_when_a_line_is_drawn():
    calls = []

    def status() -> str:
        calls.append(1)
        return f"loss {len(calls)}"

    bar, stream, clock = make(total=3)
    with bar:
        bar.update(1, status=status)  # under the interval: nothing drawn, nothing computed
        assert calls == [] and stream.getvalue() == ""
        clock.now += 10
        bar.update(1, status=status)
        assert calls == [1]
    assert stream.getvalue().splitlines()[0].endswith("| loss 1")
    assert len(calls) == 2  # once more for the final line


def test_unknown_total_and_callback_form():
    stream, clock = io.StringIO(), Clock()
    bar = Progress(desc="search", stream=stream, clock=clock, interval=5, tty=False, unit="steps")

    def search(on_step=no_progress):  # how library code takes the callback
        for i in range(3):
            clock.now += 4
            on_step(1, f"threshold {i}")

    search(bar)
    bar.close()
    bar.close()  # idempotent
    assert stream.getvalue().splitlines() == [
        "search: 2 steps 8.0s elapsed | threshold 1",
        "search: done 3 steps in 12.0s | threshold 2",
    ]
    assert search() is None  # the default no-op callback


def test_quiet_prints_nothing_and_still_counts():
    bar, stream, clock = make(enabled=False, interval=0)
    with bar:
        for _ in range(4):
            clock.now += 60
            bar.update(1, status="x")
    assert stream.getvalue() == ""
    assert bar.n == 4


def test_iterable_form_yields_items_counts_total_from_len():
    stream, clock = io.StringIO(), Clock()
    def slow(items):
        for item in items:
            clock.now += 4
            yield item

    bar = progress(slow([10, 20, 30]), desc="eval", total=3, stream=stream, clock=clock, tty=False, interval=5)
    assert list(bar) == [10, 20, 30]
    assert stream.getvalue() == "eval: 2/3 (67%) 8.0s elapsed, ETA 4.0s\neval: done 3/3 in 12.0s\n"
    assert progress([1, 2]).total == 2


def test_default_interval_is_ten_seconds():
    stream, clock = io.StringIO(), Clock()
    with progress(total=2, desc="slow", stream=stream, clock=clock, tty=False) as bar:
        clock.now += 9.9
        bar.update(1)
        assert stream.getvalue() == ""
        clock.now += 0.1
        bar.update(1)
        assert stream.getvalue() == "slow: 2/2 (100%) 10.0s elapsed\n"


def test_work_shorter_than_the_interval_is_silent():
    stream, clock = io.StringIO(), Clock()
    with progress(total=3, desc="fast", stream=stream, clock=clock, tty=False) as bar:
        for _ in range(3):
            clock.now += 3
            bar.update(1)
    assert stream.getvalue() == ""


def test_tty_uses_tqdm_on_the_given_stream_not_stdout(capsys):
    stream = io.StringIO()
    with progress(total=2, desc="bar", stream=stream, tty=True) as bar:
        bar.update(2, status="ok")
    assert stream.getvalue().startswith("\rbar:") and "/2 [" in stream.getvalue()  # tqdm's bar format
    assert capsys.readouterr().out == ""


def test_suspended_clears_the_terminal_bar_around_other_output():
    stream = io.StringIO()
    with progress(total=2, desc="bar", stream=stream, tty=True, interval=0) as bar:
        bar.update(1)
        drawn = stream.getvalue()
        with bar.suspended():
            stream.write("[2/3] a line of ours\n")
        after = stream.getvalue()[len(drawn):]
    assert after.startswith("\r") and after.index("\r") < after.index("[2/3] a line of ours")  # bar cleared first
    quiet = progress(total=1, enabled=False)
    with quiet.suspended():  # a no-op without a bar
        pass


def test_default_stream_is_stderr_never_stdout(capsys):
    with progress(total=1, desc="stderr-only", interval=0, tty=False) as bar:
        bar.update(1)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "stderr-only: done 1/1" in captured.err


def test_total_form_is_not_iterable():
    with pytest.raises(TypeError):
        iter(progress(total=3, enabled=False)).__next__()


@pytest.mark.parametrize("seconds, text", [(4.24, "4.2s"), (185, "3m05s"), (3725, "1h02m")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text
