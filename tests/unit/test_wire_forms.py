"""The cheap wire forms: jsonb text decoded through json's scanner gives what json.loads gives
(and fails as it fails), and the array forms of the batch statements are what PostgreSQL and
JSON parsers expect."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foreman_rt.arrays import column, id_array, json_array
from foreman_rt.db import decode_json

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(JSON_VALUES)
def test_decoding_matches_json_loads(value: Any) -> None:
    # PostgreSQL prints jsonb with ", " and ": " separators and nothing around the value.
    text = json.dumps(value, ensure_ascii=False)
    decoded = decode_json(text)
    assert decoded == json.loads(text)
    assert type(decoded) is type(json.loads(text))


@pytest.mark.parametrize(
    "text",
    ["", "nul", "{", '{"a": 1} x', " 1", "1 ", "[1,]", '"\\x"', "NaN-"],
)
def test_text_that_is_not_one_json_value_fails_as_json_loads_fails(text: str) -> None:
    try:
        expected: Any = json.loads(text)
    except json.JSONDecodeError:
        with pytest.raises(json.JSONDecodeError):
            decode_json(text)
    else:  # json.loads accepts it (surrounding whitespace): so must this
        assert decode_json(text) == expected


def test_big_integers_stay_exact() -> None:
    assert decode_json('{"id": 123456789012345678901234567890}') == {
        "id": 123456789012345678901234567890
    }


def test_id_array_is_postgresql_array_text() -> None:
    assert id_array([3, 1, 2]) == "{3,1,2}"
    assert id_array([]) == "{}"
    assert id_array([-5, 2**62]) == "{-5,4611686018427387904}"


def test_id_array_refuses_what_is_not_an_integer() -> None:
    with pytest.raises(ValueError):
        id_array(["1}", 2])  # type: ignore[list-item]


def test_json_array_keeps_each_text_as_one_element() -> None:
    texts = ["null", '{"a": [1, 2]}', '"x,y"', "1.5"]
    assert json.loads(json_array(texts)) == [None, {"a": [1, 2]}, "x,y", 1.5]
    assert json_array([]) == "[]"


def test_column_is_none_only_when_every_value_is() -> None:
    assert column([None, None]) is None
    assert column([]) is None
    assert column([None, 0]) == [None, 0]
    assert column(["", None]) == ["", None]
