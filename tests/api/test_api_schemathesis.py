"""Property-based fuzzing of the OpenAPI schema with schemathesis (CLI `st run`) against a real
`foreman-rt api` process: no request may get a 5xx (`not_a_server_error` only). Bounded: a
fixed seed, a few examples per operation, a hard subprocess timeout. The SSE routes are left
out (their streams stay open; test_api_sse.py covers them)."""

from __future__ import annotations

import asyncio
import re
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from api_support import REPORT, ApiServer, assert_ok

pytestmark = [pytest.mark.db, pytest.mark.e2e, pytest.mark.timeout(300)]

ST = Path(sys.executable).parent / "st"
HARD_LIMIT = 180.0  # seconds; the run takes about 20 s


@pytest.mark.skipif(not ST.exists(), reason="schemathesis is not installed")
async def test_schemathesis_finds_no_server_error(api: ApiServer, tmp_path: Path) -> None:
    async with api.client() as http:  # some real ids for the fuzzer to hit
        for i in range(3):
            assert_ok(await http.post("/jobs", json={"kind": "k", "params": {"i": i}}), 201)
        assert_ok(await http.post("/jobs/claim", json={"kinds": ["k"], "worker_id": "w"}))

    junit = tmp_path / "schemathesis-junit.xml"
    argv = [
        str(ST),
        "run",
        f"{api.base}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "12",
        "--seed",
        "20261122",
        "--exclude-path-regex",
        "/events",
        "--request-timeout",
        "10",
        "--warnings",
        "off",
        "--report",
        "junit",
        "--report-junit-path",
        str(junit),
    ]
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), HARD_LIMIT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"schemathesis ran over {HARD_LIMIT} s")
    output = out.decode(errors="replace")
    elapsed = time.monotonic() - started
    assert proc.returncode in (0, 1), f"st exited {proc.returncode}:\n{output[-4000:]}"
    assert junit.exists(), output[-4000:]

    tree = ET.parse(junit)
    cases = list(tree.iter("testcase"))
    assert len(cases) >= 14, [c.get("name") for c in cases]  # every non-SSE operation ran
    problems = [
        f"{case.get('name')}: {problem.get('message', '')}\n{problem.text or ''}"
        for case in cases
        for problem in case
        if problem.tag in ("failure", "error")
    ]
    generated = re.search(r"(\d+) generated", output)
    REPORT["schemathesis"] = (
        f"{len(cases)} operations, {generated.group(1) if generated else '?'} cases in "
        f"{elapsed:.0f} s, {len(problems)} with a server error"
    )
    print(REPORT["schemathesis"])
    assert proc.returncode == 0 or problems, output[-4000:]
    assert not problems, "server errors found by schemathesis:\n\n" + "\n\n".join(problems)
