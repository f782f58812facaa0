"""Running coroutines from synchronous entry points, on uvloop wherever it is available."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a fresh uvloop (or asyncio) event loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent only on Windows
        return asyncio.run(coro)
    return uvloop.run(coro)
