"""`make demo` end to end: the example package's demo against the test database prints each
job's expected outcome (it listens on <schema>_events, so it also checks that a listener holding
an events demand row hears state changes and progress)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.db


def test_the_demo_runs_every_example_to_its_expected_outcome(pg_dsn: str) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "foreman_examples.demo", pg_dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its worker too is stopped if it hangs
    )
    try:
        out, _ = demo.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(demo.pid, signal.SIGKILL)
        out, _ = demo.communicate()
        raise AssertionError(f"the demo did not finish in 120 s:\n{out}") from None
    assert demo.returncode == 0, f"demo exited {demo.returncode}:\n{out}"
    result = out.split("\nresult:\n", 1)[1]
    lines = [line for line in result.splitlines() if line.startswith("  demo.")]
    assert len(lines) == 6 and all(line.endswith("ok") for line in lines), result
    assert "progress 12/12" in out, "no progress event reached the demo"
