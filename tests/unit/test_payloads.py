"""NOTIFY payload parsers: normal payloads, the overflow forms, and garbage."""

from __future__ import annotations

import pytest

from foreman_rt.payloads import Events, Wake, parse_cancel, parse_events, parse_wake

DEEP = "[" * 5000 + "]" * 5000


def test_wake_groups_are_parsed() -> None:
    wake = parse_wake('[["default","email",3],["bulk","resize",1]]')
    assert wake == Wake(groups=(("default", "email", 3, None), ("bulk", "resize", 1, None)))


def test_wake_groups_carry_the_earliest_due_time() -> None:
    wake = parse_wake('[["default","email",2,1.5],["default","email",1,null],["q","x",1,0.2]]')
    assert wake.groups[0] == ("default", "email", 2, 1.5)
    assert wake.earliest_due(frozenset({"default"}), frozenset({"email"})) == 1.5
    assert wake.earliest_due(None, frozenset({"email", "x"})) == 0.2
    assert wake.earliest_due(None, frozenset({"other"})) is None
    assert not wake.everything


def test_wake_star_means_everything() -> None:
    assert parse_wake('"*"') == Wake(everything=True)


@pytest.mark.parametrize(
    "payload", ["", "not json", "{", "null", "5", '[["q","k"]]', '[[1,2,"x"]]']
)
def test_unreadable_wake_means_everything(payload: str) -> None:
    assert parse_wake(payload).everything


def test_deeply_nested_wake_means_everything() -> None:
    # BUG: json.loads raises RecursionError, which parse_wake does not catch.
    assert parse_wake(DEEP).everything


def test_wake_concerns_matching_queue_and_kind_only() -> None:
    wake = parse_wake('[["default","email",1]]')
    assert wake.concerns(None, frozenset({"email"}))
    assert wake.concerns(frozenset({"default"}), frozenset({"email", "sms"}))
    assert not wake.concerns(frozenset({"other"}), frozenset({"email"}))
    assert not wake.concerns(None, frozenset({"sms"}))
    assert Wake(everything=True).concerns(frozenset({"x"}), frozenset())


def test_events_counts_jobs_and_ids_are_parsed() -> None:
    events = parse_events(
        '{"c":[["email","default","succeeded",2]],"j":[["7","succeeded"],[8,"failed"]]}'
    )
    assert events.counts == (("email", "default", "succeeded", 2),)
    assert events.jobs == ((7, "succeeded"), (8, "failed"))
    assert events.ids == frozenset({7, 8})
    assert not events.overflow


def test_events_progress_ids_are_parsed() -> None:
    events = parse_events('{"p":["5","6"]}')
    assert events.progress == (5, 6)
    assert events.ids == frozenset({5, 6})
    assert not events.overflow


@pytest.mark.parametrize(
    "payload", ['{"c":[["k","q","failed",1]],"o":true}', '{"o":true}', '{"p":[],"o":true}']
)
def test_events_overflow_forms_are_flagged(payload: str) -> None:
    events = parse_events(payload)
    assert events.overflow
    assert events.ids == frozenset()


@pytest.mark.parametrize(
    "payload", ["", "garbage", "[1,2]", '{"j":[["x","succeeded"]]}', '{"j":"abc"}', '{"c":[[1]]}']
)
def test_unreadable_events_count_as_overflow(payload: str) -> None:
    assert parse_events(payload) == Events(overflow=True)


def test_deeply_nested_events_count_as_overflow() -> None:
    # BUG: json.loads raises RecursionError, which parse_events does not catch.
    assert parse_events(DEEP).overflow


def test_cancel_ids_are_parsed() -> None:
    assert parse_cancel("1,2,30") == frozenset({1, 2, 30})
    assert parse_cancel("9") == frozenset({9})


@pytest.mark.parametrize("payload", ["*", "abc", "1,x", "1.5"])
def test_cancel_overflow_or_garbage_means_check_everything(payload: str) -> None:
    assert parse_cancel(payload) is None
