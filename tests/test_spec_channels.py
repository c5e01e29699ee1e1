"""Channel-set notation: parsing, formatting, errors, and the round trip."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slimspec.specio import format_channel_set, parse_channel_set
from slimspec.specio.channels import PATTERN, check_channel_set, is_channel_set_text


@pytest.mark.parametrize(
    ("text", "size", "expected"),
    [
        ("all", 5, (0, 1, 2, 3, 4)),
        ("  all ", 2, (0, 1)),
        ("0", None, (0,)),
        ("7", 8, (7,)),
        ("0-5,9,12-15", None, (0, 1, 2, 3, 4, 5, 9, 12, 13, 14, 15)),
        (" 9 , 0-2 ,12 - 13 ", None, (0, 1, 2, 9, 12, 13)),  # any order, whitespace allowed
        ("3-3", None, (3,)),
        ("7,8", None, (7, 8)),
        ("0-63", 64, tuple(range(64))),
    ],
)
def test_parse(text: str, size: int | None, expected: tuple[int, ...]) -> None:
    assert parse_channel_set(text, size) == expected


@pytest.mark.parametrize(
    ("text", "size", "message"),
    [
        ("", None, "empty channel set"),
        ("   ", None, "empty channel set"),
        ("all", None, "'all' needs the number of channels"),
        ("all", 0, "empty channel set"),
        ("1,,2", None, "empty item in channel set '1,,2' (stray comma)"),
        ("1,2,", None, "stray comma"),
        ("a", None, "bad channel set item 'a' in 'a': expected N or N-M"),
        ("-3", None, "bad channel set item '-3'"),
        ("1-2-3", None, "bad channel set item '1-2-3'"),
        ("1.5", None, "bad channel set item '1.5'"),
        ("0-5 9", None, "bad channel set item '0-5 9'"),
        ("5-3", None, "descending range '5-3' in channel set '5-3'"),
        ("1-3,2", None, "channel 2 appears twice in channel set '1-3,2' ('1-3' and '2')"),
        ("4,4", None, "channel 4 appears twice"),
        ("0-5,3-8", None, "channel 3 appears twice"),
        ("0-9", 8, "channel 9 out of range in channel set '0-9': only 8 channels (0-7)"),
        ("12", 4, "channel 12 out of range"),
    ],
)
def test_parse_errors(text: str, size: int | None, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_channel_set(text, size)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_channel_set(7)  # type: ignore[arg-type]


def test_check_is_syntax_only() -> None:
    check_channel_set("all")  # no size needed
    check_channel_set("0-1000000000")  # no expansion, no size
    with pytest.raises(ValueError, match="descending"):
        check_channel_set("9-1")


@pytest.mark.parametrize(
    ("indices", "expected"),
    [
        ((0, 1, 2, 3, 4, 5, 9, *range(12, 64)), "0-5,9,12-63"),
        ((7, 8), "7,8"),
        ((3,), "3"),
        ((1, 2, 3), "1-3"),
        ((0, 2, 4), "0,2,4"),
        ((9, 0, 1, 2), "0-2,9"),  # sorted first
        ((0, 1, 5, 6, 7, 10, 11), "0,1,5-7,10,11"),
    ],
)
def test_format(indices: tuple[int, ...], expected: str) -> None:
    assert format_channel_set(indices) == expected


@pytest.mark.parametrize(("indices", "message"), [((), "empty"), ((1, 1), "twice"), ((-1, 2), "non-negative"),
                                                  ((True,), "non-negative")])
def test_format_errors(indices: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        format_channel_set(indices)


def test_is_channel_set_text() -> None:
    assert is_channel_set_text("0-5,9")
    assert is_channel_set_text("7")
    assert not is_channel_set_text("all")
    assert not is_channel_set_text("-,")
    assert not is_channel_set_text(7)


@settings(max_examples=300, deadline=None)
@given(st.sets(st.integers(min_value=0, max_value=300), min_size=1))
def test_round_trip(indices: set[int]) -> None:
    text = format_channel_set(indices)
    assert parse_channel_set(text) == tuple(sorted(indices))
    assert parse_channel_set(text, size=max(indices) + 1) == tuple(sorted(indices))
    assert re.fullmatch(PATTERN, text)
    # runs of 3+ are ranges, so no two consecutive plain items can be extended into a run
    assert format_channel_set(parse_channel_set(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789,- al", max_size=14))
def test_parser_agrees_with_schema_pattern(text: str) -> None:
    """Whatever parses also matches the schema's pattern; the parser only adds semantic checks."""
    try:
        parse_channel_set(text, size=10**6)
    except ValueError as exc:
        if re.fullmatch(PATTERN, text):
            assert re.search("descending|twice|out of range", str(exc)), (text, exc)
    else:
        assert re.fullmatch(PATTERN, text)
