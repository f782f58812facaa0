"""`foreman-rt worker --processes P`: starts P worker processes, restarts any that dies (with
backoff), and passes SIGTERM/SIGINT on so they drain; a second signal stops them at once.

The CLI execs this file as a script (`exec_argv`), so the supervising process imports only the
standard library: about 10 MB resident instead of the CLI's 40."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

log = logging.getLogger("foreman_rt.supervisor")

RESTART_BACKOFF_MAX = 10.0


class Supervisor:
    """Keeps `count` child processes running until stopped."""

    def __init__(self, count: int, argv_for: Callable[[int], Sequence[str]]) -> None:
        self._count = count
        self._argv_for = argv_for
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._failures: dict[int, int] = {}
        self._stopping = False
        self._signals = 0

    def _spawn(self, slot: int) -> None:
        child = subprocess.Popen(list(self._argv_for(slot)))
        self._children[slot] = child
        log.info("started worker process %d (pid %d)", slot, child.pid)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True
        self._signals += 1
        for child in self._children.values():
            if child.poll() is None:
                child.send_signal(signum if self._signals == 1 else signal.SIGTERM)
                if self._signals > 1:
                    child.send_signal(signum)

    def run(self) -> int:
        """Supervise until a signal stops every child; returns the exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for slot in range(self._count):
            self._spawn(slot)
        restart_at: dict[int, float] = {}
        while True:
            time.sleep(0.1)
            alive = 0
            for slot, child in list(self._children.items()):
                code = child.poll()
                if code is None:
                    alive += 1
                    continue
                if self._stopping:
                    continue
                if slot not in restart_at:
                    self._failures[slot] = self._failures.get(slot, 0) + 1
                    delay = min(RESTART_BACKOFF_MAX, 0.5 * 2 ** (self._failures[slot] - 1))
                    log.error(
                        "worker process %d (pid %d) exited with %s; restarting in %.1fs",
                        slot,
                        child.pid,
                        code,
                        delay,
                    )
                    restart_at[slot] = time.monotonic() + delay
                if time.monotonic() >= restart_at[slot]:
                    del restart_at[slot]
                    self._spawn(slot)
                    alive += 1
            if self._stopping and alive == 0:
                codes = [c.returncode for c in self._children.values()]
                return 0 if all(c in (0, -signal.SIGTERM, -signal.SIGINT) for c in codes) else 1


def exec_argv(count: int, base: Sequence[str], metrics_port: int | None, level: str) -> list[str]:
    """The command line that runs this file as the supervisor of `count` children."""
    port = "" if metrics_port is None else str(metrics_port)
    return [sys.executable, "-P", __file__, str(count), json.dumps(list(base)), port, level]


def main(args: Sequence[str]) -> int:
    """Entry point when run as a script: count, base argv (JSON), metrics port, log level."""
    count, base, port, level = args
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics_port = int(port) if port else None
    argv: list[str] = json.loads(base)
    return Supervisor(int(count), lambda slot: child_argv(argv, slot, metrics_port)).run()


def child_argv(base: Sequence[str], slot: int, metrics_port: int | None) -> list[str]:
    """The command line of child `slot`: the same options, one process, its own metrics port."""
    argv = [sys.executable, "-m", "foreman_rt", *base, "--processes", "1"]
    if metrics_port is not None:
        argv += ["--metrics-port", str(metrics_port + slot)]
    return argv


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
