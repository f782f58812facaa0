"""Property tests: JobSpec.build returns a spec or raises InvalidInput, never anything else."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from foreman_rt.errors import InvalidInput
from foreman_rt.jobs import JobSpec

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(kind=st.text(), params=json_values)
def test_build_returns_a_spec_or_raises_invalid_input(kind: str, params: Any) -> None:
    try:
        spec = JobSpec.build(kind, params)
    except InvalidInput as exc:
        assert exc.code in {"invalid_kind", "invalid_params", "params_too_large"}
        return
    assert spec.kind == kind
    assert json.loads(spec.params_json) == ({} if params is None else params)
    assert "\\u0000" not in spec.params_json.replace("\\\\", "")


@settings(max_examples=300, deadline=None)
@given(name=st.text() | st.from_regex(NAME, fullmatch=True))
@example(name="job\n")
def test_accepted_kinds_match_the_documented_charset(name: str) -> None:
    try:
        spec = JobSpec.build(name)
    except InvalidInput:
        assert NAME.fullmatch(name) is None
        return
    assert NAME.fullmatch(spec.kind) is not None
