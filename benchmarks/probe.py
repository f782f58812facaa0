"""Handlers tell the benchmark when they run by sending it a UDP datagram on the loopback.

The benchmark process sets FOREMAN_BENCH_PROBE=127.0.0.1:PORT for the workers it starts. A
datagram is one line, `<event> <token> <unix time> <pid>`:

    f  the first job this process ran (the drain clock starts at the earliest one)
    s  a handler started (wake latency, and "the job is running" for cancel latency)
    c  a handler saw asyncio.CancelledError (cancel latency)

Sending one is a single non-blocking sendto on a socket opened once per process, so it costs
microseconds and does not wait for the benchmark to read it."""

from __future__ import annotations

import contextlib
import os
import socket
import time

PROBE_ENV = "FOREMAN_BENCH_PROBE"
PAYLOAD = "x" * 80  # with the token, a job's params are about 100 bytes of JSON

_sock: socket.socket | None = None
_addr: tuple[str, int] | None = None
_first_sent = False


def _target() -> tuple[socket.socket, tuple[str, int]] | None:
    global _sock, _addr
    if _sock is None:
        raw = os.environ.get(PROBE_ENV, "")
        if not raw:
            return None
        host, _, port = raw.rpartition(":")
        _addr = (host, int(port))
        _sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _sock.setblocking(False)
    assert _addr is not None
    return _sock, _addr


def send(event: str, token: object) -> None:
    """Report `event` for job `token` with the current wall-clock time."""
    target = _target()
    if target is None:
        return
    sock, addr = target
    # A full socket buffer loses the datagram; the benchmark then counts the job as missing.
    with contextlib.suppress(OSError):
        sock.sendto(f"{event} {token} {time.time():.6f} {os.getpid()}".encode(), addr)


def first() -> None:
    """Report this process's first job (once per process)."""
    global _first_sent
    if not _first_sent:
        _first_sent = True
        send("f", 0)


def params(token: int) -> dict[str, object]:
    """The parameters every benchmark job carries: a token and ~80 bytes of padding."""
    return {"token": token, "payload": PAYLOAD}
