"""Loading handlers from entry points: duplicates and import failures are configuration errors
with stable codes, raised before any worker starts."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from foreman_rt import ConfigurationError
from foreman_rt.registry import GROUP, from_entry_points

RESIZE = "foreman_examples.handlers:resize"
FLAKY = "foreman_examples.handlers:flaky"


def test_entry_points_load_into_handlers() -> None:
    handlers = from_entry_points(
        [EntryPoint("resize", RESIZE, GROUP), EntryPoint("flaky", FLAKY, GROUP)]
    )
    assert sorted(handlers) == ["flaky", "resize"]
    assert handlers["resize"].is_async and handlers["resize"].takes_ctx


def test_two_entry_points_for_one_kind_are_rejected() -> None:
    eps = [EntryPoint("resize", RESIZE, GROUP), EntryPoint("resize", FLAKY, GROUP)]
    with pytest.raises(ConfigurationError) as info:
        from_entry_points(eps)
    assert info.value.code == "duplicate_handler"
    assert RESIZE in info.value.message and FLAKY in info.value.message


def test_entry_point_that_cannot_be_imported_is_reported() -> None:
    eps = [EntryPoint("resize", RESIZE, GROUP), EntryPoint("ghost", "nosuch.module:fn", GROUP)]
    with pytest.raises(ConfigurationError) as info:
        from_entry_points(eps)
    assert info.value.code == "handler_import_failed"
    assert "ghost" in info.value.message and "nosuch" in info.value.message


def test_entry_point_naming_a_missing_attribute_is_reported() -> None:
    with pytest.raises(ConfigurationError) as info:
        from_entry_points([EntryPoint("x", "foreman_examples.handlers:nothing_here", GROUP)])
    assert info.value.code == "handler_import_failed"
