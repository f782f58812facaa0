"""JobSpec.build: every field is validated and every rejection is InvalidInput with its code."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

import pytest
from cases import AWARE, INVALID_ARGS, INVALID_IDS

from foreman_rt.errors import ForemanError, InvalidInput
from foreman_rt.jobs import PARAMS_MAX_BYTES, JobSpec


@pytest.mark.parametrize(("kind", "params", "options", "code"), INVALID_ARGS, ids=INVALID_IDS)
def test_invalid_field_raises_invalid_input_with_field_code(
    kind: Any, params: Any, options: dict[str, Any], code: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        JobSpec.build(kind, params, **options)
    assert info.value.code == code
    assert info.value.status == 400
    assert info.value.to_dict()["code"] == code


def test_defaults_fill_every_field() -> None:
    spec = JobSpec.build("send-email")
    assert spec.kind == "send-email"
    assert spec.params_json == "{}"
    assert spec.queue == "default"
    assert spec.tenant == "default"
    assert spec.priority == 0
    assert spec.max_attempts == 3
    assert spec.scheduled_at is None
    assert spec.delay is None
    assert spec.idempotency_key is None
    assert spec.service is None
    assert (spec.backoff_base_seconds, spec.backoff_max_seconds) == (None, None)


def test_every_valid_field_is_kept() -> None:
    spec = JobSpec.build(
        "a.b:c/d-e_f",
        {"to": "x@example.com", "n": [1, 2.5, None, True]},
        queue="emails",
        priority=-10_000,
        scheduled_at=AWARE,
        max_attempts=1000,
        idempotency_key="order-42 (retry)",
        tenant="acme",
        service="billing api",
        backoff=(1, 60),
    )
    assert json.loads(spec.params_json) == {"to": "x@example.com", "n": [1, 2.5, None, True]}
    assert spec.queue == "emails"
    assert spec.priority == -10_000
    assert spec.scheduled_at == AWARE
    assert spec.max_attempts == 1000
    assert spec.idempotency_key == "order-42 (retry)"
    assert spec.tenant == "acme"
    assert spec.service == "billing api"
    assert (spec.backoff_base_seconds, spec.backoff_max_seconds) == (1.0, 60.0)


@pytest.mark.parametrize("delay", [0, 2.5, timedelta(minutes=1), 315_360_000])
def test_delay_accepts_seconds_and_timedelta(delay: float | timedelta) -> None:
    spec = JobSpec.build("k", delay=delay)
    expected = delay.total_seconds() if isinstance(delay, timedelta) else delay
    assert spec.delay is not None
    assert math.isclose(spec.delay.total_seconds(), expected)


def test_negative_timedelta_delay_is_invalid() -> None:
    with pytest.raises(InvalidInput) as info:
        JobSpec.build("k", delay=timedelta(seconds=-1))
    assert info.value.code == "invalid_delay"


def test_params_at_exactly_the_size_limit_are_accepted() -> None:
    text = "x" * (PARAMS_MAX_BYTES - 2)  # the JSON form adds two quotes
    assert len(JobSpec.build("k", text).params_json) == PARAMS_MAX_BYTES


def test_non_ascii_params_are_measured_as_escaped_json() -> None:
    # json.dumps escapes to ASCII, so each "é" costs 6 bytes of JSON text.
    with pytest.raises(InvalidInput) as info:
        JobSpec.build("k", "é" * (PARAMS_MAX_BYTES // 6 + 1))
    assert info.value.code == "params_too_large"


def test_escaped_backslash_u0000_text_is_not_a_nul() -> None:
    spec = JobSpec.build("k", {"a": "\\u0000", "b": "\\\\u0000"})
    assert json.loads(spec.params_json) == {"a": "\\u0000", "b": "\\\\u0000"}


def test_kind_of_exactly_128_characters_is_accepted() -> None:
    assert JobSpec.build("k" * 128).kind == "k" * 128


@pytest.mark.parametrize("field", ["kind", "queue", "tenant"])
def test_name_with_trailing_newline_is_rejected(field: str) -> None:
    # BUG: jobs._NAME_RE ends in `$`, which also matches before a trailing "\n".
    options: dict[str, Any] = {} if field == "kind" else {field: "name\n"}
    kind = "name\n" if field == "kind" else "k"
    with pytest.raises(InvalidInput) as info:
        JobSpec.build(kind, **options)
    assert info.value.code == f"invalid_{field}"


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"delay": 10**400}, "invalid_delay"),
        ({"backoff": (0, 10**400)}, "invalid_backoff"),
    ],
    ids=["delay", "backoff"],
)
def test_huge_integer_is_invalid_input_not_overflow_error(
    options: dict[str, Any], code: str
) -> None:
    # BUG: math.isfinite(int) / float(int) raise OverflowError, which escapes validation.
    with pytest.raises(InvalidInput) as info:
        JobSpec.build("k", **options)
    assert info.value.code == code


def test_backoff_given_as_a_string_is_rejected() -> None:
    # BUG: validate_backoff unpacks any 2-item iterable, so "12" becomes (1.0, 2.0).
    with pytest.raises(InvalidInput) as info:
        JobSpec.build("k", backoff="12")  # type: ignore[arg-type]
    assert info.value.code == "invalid_backoff"


def test_deeply_nested_params_are_invalid_input_not_recursion_error() -> None:
    # BUG: encode_params catches TypeError/ValueError but not RecursionError.
    nested: Any = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(ForemanError) as info:
        JobSpec.build("k", nested)
    assert isinstance(info.value, InvalidInput)
    assert info.value.code == "invalid_params"


def _lists(depth: int, leaf: Any = 0) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("leaf", [0, "x" * 300], ids=["short", "long"])
def test_params_nested_exactly_to_the_limit_pass_and_one_level_more_fails(leaf: Any) -> None:
    """Short JSON skips the depth walk (each level takes two characters); the limit holds
    for short and long JSON alike."""
    assert json.loads(JobSpec.build("k", _lists(100, leaf)).params_json) == _lists(100, leaf)
    with pytest.raises(InvalidInput, match="nest deeper than 100") as info:
        JobSpec.build("k", _lists(101, leaf))
    assert info.value.code == "invalid_params"


def test_a_name_rejected_once_stays_rejected_after_valid_names_were_remembered() -> None:
    for n in range(5000):  # more names than the remembered set holds
        JobSpec.build(f"k{n}")
    for bad in ("", "bad name", "x" * 129):
        with pytest.raises(InvalidInput):
            JobSpec.build("k", queue=bad)
    assert JobSpec.build("k4999", queue="k1").queue == "k1"
