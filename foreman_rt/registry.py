"""Handlers from the entry-point group `foreman_rt.handlers` (name = job kind, value =
`module:callable`) or from a `module:object` spec; loaded eagerly, loudly on any problem."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from foreman_rt.errors import ConfigurationError
from foreman_rt.handlers import Handler
from foreman_rt.values import validate_name

GROUP = "foreman_rt.handlers"


def build(handlers: Mapping[str, Callable[..., Any]]) -> dict[str, Handler]:
    """Wrap a {kind: callable} mapping, validating kinds and signatures."""
    out: dict[str, Handler] = {}
    for kind, fn in handlers.items():
        try:
            validate_name("kind", kind)
            out[kind] = Handler.wrap(kind, fn)
        except Exception as exc:
            raise ConfigurationError(
                f"handler for kind {kind!r} is unusable: {exc}", code="invalid_handler"
            ) from exc
    return out


def from_entry_points(eps: Iterable[EntryPoint] | None = None) -> dict[str, Handler]:
    """Every handler registered in the `foreman_rt.handlers` entry-point group."""
    found: dict[str, Callable[..., Any]] = {}
    origin: dict[str, str] = {}
    for ep in entry_points(group=GROUP) if eps is None else eps:
        if ep.name in found:
            raise ConfigurationError(
                f"job kind {ep.name!r} has two handlers: {origin[ep.name]} and {ep.value}; "
                "uninstall or rename one of them",
                code="duplicate_handler",
            )
        try:
            found[ep.name] = ep.load()
        except Exception as exc:
            raise ConfigurationError(
                f"cannot load handler {ep.name!r} from {ep.value}: {type(exc).__name__}: {exc}",
                code="handler_import_failed",
            ) from exc
        origin[ep.name] = ep.value
    return build(found)


def from_spec(spec: str) -> dict[str, Handler]:
    """Handlers from 'module:object', where object is a {kind: callable} mapping."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(
            f"--handlers {spec!r} must look like 'package.module:HANDLERS'",
            code="invalid_handler",
        )
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:
        raise ConfigurationError(
            f"cannot load handlers from {spec!r}: {type(exc).__name__}: {exc}",
            code="handler_import_failed",
        ) from exc
    if not isinstance(obj, Mapping):
        raise ConfigurationError(
            f"{spec!r} must be a mapping of job kind to callable", code="invalid_handler"
        )
    return build(obj)
