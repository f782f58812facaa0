"""parse_id, validate_schema and the channel names derived from a schema."""

from __future__ import annotations

from typing import Any

import pytest

from foreman_rt.config import Channels, quote_ident, validate_schema
from foreman_rt.errors import ConfigurationError, InvalidInput
from foreman_rt.jobs import parse_id


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1), ("1", 1), ("42", 42), (2**63 - 1, 2**63 - 1), (str(2**63 - 1), 2**63 - 1)],
)
def test_parse_id_accepts_positive_ints_and_their_strings(value: Any, expected: int) -> None:
    assert parse_id(value) == expected


@pytest.mark.parametrize(
    "value",
    [0, -1, 2**63, "0", "-1", "+1", " 1", "1.0", "", "abc", str(2**63), "1" * 20, None, True, 1.0],
)
def test_parse_id_rejects_anything_else(value: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_id(value)
    assert info.value.code == "invalid_job_id"


def test_parse_id_names_the_field_in_the_code() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_id("x", "cursor")
    assert info.value.code == "invalid_cursor_id"


@pytest.mark.parametrize("value", ["²", "١٢٣", "\uff11\uff12"])
def test_parse_id_rejects_non_ascii_digits(value: str) -> None:
    # BUG: str.isdigit() is true for "²" (int() then raises ValueError) and for Arabic-Indic or
    # full-width digits (silently parsed as an ASCII id).
    with pytest.raises(InvalidInput):
        parse_id(value)


@pytest.mark.parametrize("name", ["foreman", "_x", "a1_b2", "a" * 40, "t_0123456789ab"])
def test_valid_schema_names_pass(name: str) -> None:
    assert validate_schema(name) == name
    assert quote_ident(name) == f'"{name}"'


@pytest.mark.parametrize(
    "name", ["Foo", "a-b", "pg_x", "1x", "a" * 41, "x;drop", "", 'x"y', "a b", None]
)
def test_invalid_schema_names_raise_invalid_schema(name: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        validate_schema(name)
    assert info.value.code == "invalid_schema"


def test_schema_name_with_trailing_newline_is_rejected() -> None:
    # BUG: config._SCHEMA_RE ends in `$`, which also matches before a trailing "\n".
    with pytest.raises(ConfigurationError) as info:
        validate_schema("foreman\n")
    assert info.value.code == "invalid_schema"


def test_channels_are_named_after_the_schema() -> None:
    channels = Channels.for_schema("acme")
    assert (channels.wake, channels.events, channels.cancel) == (
        "acme_wake",
        "acme_events",
        "acme_cancel",
    )
