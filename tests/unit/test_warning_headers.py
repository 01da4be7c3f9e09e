"""Warning headers carry what a client put in a field name: whatever it is, the header is
one printable line that aiohttp writes and the text reads back unchanged."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from kubesvc.apiserver.http import warning_text


def test_del_and_c1_controls_are_escaped() -> None:
    text = 'unknown field "ports[0].na\x7fe\x85\u2028"'
    quoted = warning_text(text)
    assert quoted == '"unknown field \\"ports[0].na\\u007fe\\u0085\\u2028\\""'
    assert json.loads(quoted) == text


@given(st.text(max_size=40))
def test_any_text_is_a_printable_header_that_reads_back(text: str) -> None:
    quoted = warning_text(text)
    assert all(c.isprintable() for c in quoted)
    assert "\r" not in quoted and "\n" not in quoted
    assert json.loads(quoted) == text
