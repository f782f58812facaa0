"""Every test in this folder is a reliability scenario: marked `reliability`, so `-m reliability`
selects them and `-m "not reliability"` leaves them out. FOREMAN_CHAOS_LONG=1 runs the long form.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # harness, tcp_proxy and the handlers import as top-level modules


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the scenarios of this folder (this hook sees the whole session's items)."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.reliability)
