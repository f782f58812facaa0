"""The handler contract: `handler(params, ctx)`, async or plain; what it may raise; and the
context it receives."""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_type_hints

from foreman_rt.values import BIGINT_MAX, clean_text

if TYPE_CHECKING:
    from pydantic import BaseModel


class Retry(Exception):
    """Raise to ask for another attempt after `delay` seconds (None: the retry policy)."""

    def __init__(self, message: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(Exception):
    """Raise to fail the job at once, without retrying."""


class Cancelled(Exception):
    """Raised by `ctx.raise_if_cancelled()` once a cancel was requested."""


ProgressSink = Callable[["JobContext"], None]
_EVENT_LOCK = threading.Lock()


@dataclass(slots=True, eq=False)
class JobContext:
    """What a handler knows about its job, plus progress reporting and cancellation."""

    job_id: int
    run_id: int
    kind: str
    queue: str
    tenant: str
    attempt: int
    max_attempts: int
    _on_progress: ProgressSink | None = None
    _cancel_event: threading.Event | None = None
    progress_current: int | None = None
    progress_total: int | None = None
    progress_message: str | None = None
    progress_dirty: bool = False

    @property
    def cancel_event(self) -> threading.Event:
        """Set once a cancel was requested; sync handlers may wait on it. Made on first use:
        most jobs never ask, and an Event per job cost about 6 % of a no-op drain."""
        event = self._cancel_event
        if event is None:
            with _EVENT_LOCK:  # the worker's loop and a handler thread may both ask first
                event = self._cancel_event
                if event is None:
                    event = self._cancel_event = threading.Event()
        return event

    @property
    def cancelled(self) -> bool:
        """True once a cancel was requested (sync handlers poll this)."""
        event = self._cancel_event
        return event is not None and event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise Cancelled if a cancel was requested."""
        if self.cancelled:
            raise Cancelled(f"job {self.job_id} was cancelled")

    async def progress(
        self, current: int, total: int | None = None, message: str | None = None
    ) -> None:
        """Record progress; it reaches the database with the next (early) heartbeat."""
        self.set_progress(current, total, message)

    def set_progress(
        self, current: int, total: int | None = None, message: str | None = None
    ) -> None:
        """The same as `progress`, callable from sync handlers; counts must fit in 64 bits."""
        current = int(current)
        total = None if total is None else int(total)
        for name, value in (("current", current), ("total", total)):
            if value is not None and not -BIGINT_MAX - 1 <= value <= BIGINT_MAX:
                raise ValueError(f"progress {name}={value} does not fit in a 64-bit integer")
        self.progress_current = current
        self.progress_total = total
        self.progress_message = None if message is None else clean_text(str(message)[:1000])
        self.progress_dirty = True
        if self._on_progress is not None:
            self._on_progress(self)


HandlerFn = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Handler:
    """A registered handler: how to call it and how to turn params into its argument."""

    kind: str
    fn: HandlerFn
    is_async: bool
    takes_ctx: bool
    model: type[BaseModel] | None

    @classmethod
    def wrap(cls, kind: str, fn: HandlerFn) -> Handler:
        """Inspect `fn` once: async or sync, (params) or (params, ctx), pydantic params."""
        if not callable(fn):
            raise TypeError(f"handler for {kind!r} is not callable: {fn!r}")
        target = fn if inspect.isroutine(fn) or inspect.isclass(fn) else type(fn).__call__
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if not 1 <= len(params) <= 2:
            raise TypeError(f"handler for {kind!r} must take (params) or (params, ctx)")
        model = _params_model(fn, params[0].name)
        is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(fn)
        return cls(kind, fn, is_async, len(params) == 2, model)

    def bind(self, params: Any, ctx: JobContext) -> Callable[[], Any]:
        """A zero-argument callable running the handler (validates params first)."""
        arg = self.model.model_validate(params) if self.model is not None else params
        fn: Callable[..., Any] = self.fn
        if self.takes_ctx:
            return lambda: fn(arg, ctx)
        return lambda: fn(arg)

    def invoke(
        self, params: Any, ctx: JobContext, executor: Executor | None = None
    ) -> Awaitable[Any]:
        """What to await to run the handler: an async one taking params as they come is called
        at once (no wrapping coroutine per job); any other goes through `call`."""
        if self.is_async and self.model is None:
            result: Awaitable[Any] = self.fn(params, ctx) if self.takes_ctx else self.fn(params)
            return result
        return self.call(params, ctx, executor)

    async def call(self, params: Any, ctx: JobContext, executor: Executor | None = None) -> Any:
        """Run the handler: async on the loop, sync in `executor` (a thread pool)."""
        call = self.bind(params, ctx)
        if self.is_async:
            result: Awaitable[Any] = call()
            return await result
        return await asyncio.get_running_loop().run_in_executor(executor, call)


def _params_model(fn: HandlerFn, name: str) -> type[BaseModel] | None:
    """The pydantic model `fn` takes as params, if any. Looked up through sys.modules: a model
    class exists only once its module imported pydantic, so processes whose handlers take
    plain JSON never load it."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None:
        return None
    try:
        hints = get_type_hints(fn)
    except Exception:
        return None
    hint = hints.get(name)
    if isinstance(hint, type) and issubclass(hint, pydantic.BaseModel):
        return hint
    return None
