"""Invalid enqueue requests shared by the unit tests (JobSpec.build) and the integration tests
(Client.enqueue): each is (test id, kind, params, options, expected InvalidInput code)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from foreman_rt.jobs import PARAMS_MAX_BYTES

AWARE = datetime(2030, 1, 1, tzinfo=UTC)
NAIVE = AWARE.replace(tzinfo=None)

INVALID: list[tuple[str, Any, Any, dict[str, Any], str]] = [
    ("kind-empty", "", None, {}, "invalid_kind"),
    ("kind-none", None, None, {}, "invalid_kind"),
    ("kind-int", 7, None, {}, "invalid_kind"),
    ("kind-space", "send email", None, {}, "invalid_kind"),
    ("kind-leading-dash", "-send", None, {}, "invalid_kind"),
    ("kind-too-long", "k" * 129, None, {}, "invalid_kind"),
    ("queue-empty", "k", None, {"queue": ""}, "invalid_queue"),
    ("queue-bad-char", "k", None, {"queue": "q;drop"}, "invalid_queue"),
    ("tenant-bad-char", "k", None, {"tenant": "a b"}, "invalid_tenant"),
    ("tenant-too-long", "k", None, {"tenant": "t" * 129}, "invalid_tenant"),
    ("params-not-json", "k", {"x": object()}, {}, "invalid_params"),
    ("params-set", "k", {1, 2}, {}, "invalid_params"),
    ("params-nan", "k", {"x": float("nan")}, {}, "invalid_params"),
    ("params-infinity", "k", [float("inf")], {}, "invalid_params"),
    ("params-nul-value", "k", {"x": "a\x00b"}, {}, "invalid_params"),
    ("params-nul-key", "k", {"a\x00": 1}, {}, "invalid_params"),
    ("params-too-large", "k", "x" * PARAMS_MAX_BYTES, {}, "params_too_large"),
    ("priority-too-high", "k", None, {"priority": 10_001}, "invalid_priority"),
    ("priority-too-low", "k", None, {"priority": -10_001}, "invalid_priority"),
    ("priority-str", "k", None, {"priority": "1"}, "invalid_priority"),
    ("priority-bool", "k", None, {"priority": True}, "invalid_priority"),
    ("max-attempts-zero", "k", None, {"max_attempts": 0}, "invalid_max_attempts"),
    ("max-attempts-bool", "k", None, {"max_attempts": True}, "invalid_max_attempts"),
    ("max-attempts-1001", "k", None, {"max_attempts": 1001}, "invalid_max_attempts"),
    ("max-attempts-float", "k", None, {"max_attempts": 3.0}, "invalid_max_attempts"),
    ("delay-negative", "k", None, {"delay": -1}, "invalid_delay"),
    ("delay-nan", "k", None, {"delay": float("nan")}, "invalid_delay"),
    ("delay-infinity", "k", None, {"delay": float("inf")}, "invalid_delay"),
    ("delay-bool", "k", None, {"delay": True}, "invalid_delay"),
    ("delay-str", "k", None, {"delay": "5"}, "invalid_delay"),
    ("delay-over-ten-years", "k", None, {"delay": 315_360_001}, "invalid_delay"),
    ("schedule-both", "k", None, {"scheduled_at": AWARE, "delay": 5}, "invalid_schedule"),
    ("scheduled-at-naive", "k", None, {"scheduled_at": NAIVE}, "invalid_scheduled_at"),
    ("scheduled-at-str", "k", None, {"scheduled_at": "2030-01-01"}, "invalid_scheduled_at"),
    ("key-empty", "k", None, {"idempotency_key": ""}, "invalid_idempotency_key"),
    ("key-too-long", "k", None, {"idempotency_key": "x" * 256}, "invalid_idempotency_key"),
    ("key-newline", "k", None, {"idempotency_key": "a\nb"}, "invalid_idempotency_key"),
    ("key-int", "k", None, {"idempotency_key": 5}, "invalid_idempotency_key"),
    ("backoff-base-above-cap", "k", None, {"backoff": (10, 1)}, "invalid_backoff"),
    ("backoff-negative", "k", None, {"backoff": (-1, 2)}, "invalid_backoff"),
    ("backoff-nan", "k", None, {"backoff": (float("nan"), 2)}, "invalid_backoff"),
    ("backoff-one-value", "k", None, {"backoff": (1,)}, "invalid_backoff"),
    ("backoff-not-numbers", "k", None, {"backoff": ("a", "b")}, "invalid_backoff"),
    ("backoff-scalar", "k", None, {"backoff": 3}, "invalid_backoff"),
    ("backoff-over-30-days", "k", None, {"backoff": (1, 86_400 * 31)}, "invalid_backoff"),
    ("service-control-char", "k", None, {"service": "a\x00b"}, "invalid_service"),
]

INVALID_IDS = [case[0] for case in INVALID]
INVALID_ARGS = [case[1:] for case in INVALID]
