"""The built wheel carries the SQL files and the typing marker."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    importlib.util.find_spec("build") is None, reason="needs `build` (in the dev extra)"
)
def test_wheel_contains_sql_files_and_py_typed(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    [wheel] = tmp_path.glob("foreman_rt-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "foreman_rt/sql/migrations/0001_init.sql",
        "foreman_rt/sql/queries/claim.sql",
        "foreman_rt/py.typed",
    ):
        assert required in names, f"{required} missing from {wheel.name}"
    shipped = {n for n in names if n.startswith("foreman_rt/sql/queries/")}
    expected = {
        f"foreman_rt/sql/queries/{p.name}" for p in (ROOT / "sql" / "queries").glob("*.sql")
    }
    assert shipped == expected
