"""Label selectors from query parameters: syntax and upstream's key and value checks."""

from __future__ import annotations

import pytest

from kubesvc.api.errors import ApiError
from kubesvc.api.selectors import labels_match, make_filter, parse_label_selector


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app in (web,db)", {"app": "db"}, True),
        ("app notin (web,db)", {"app": "x"}, True),
        ("app", {"app": ""}, True),
        ("!app", {"app": ""}, False),
        ("a=", {"a": ""}, True),
        ("example.com/tier=fe,app", {"example.com/tier": "fe", "app": "x"}, True),
    ],
)
def test_label_selectors_match(text: str, labels: dict[str, str], expected: bool) -> None:
    assert labels_match(parse_label_selector(text), labels) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a in (b", "unable to parse requirement: found '', expected: ')'"),
        ("a=b=c", "unable to parse requirement: found '=', expected: ','"),
        (
            "-a=b",
            'unable to parse requirement: key: Invalid value: "-a": name part must consist of '
            "alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
            "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ),
        (
            "a=" + "x" * 64,
            f'unable to parse requirement: values[0][a]: Invalid value: "{"x" * 64}": '
            "must be no more than 63 characters",
        ),
        ("a in (b,-c)", 'unable to parse requirement: values[1][a]: Invalid value: "-c": '),
        ("\ufffd=x", 'unable to parse requirement: key: Invalid value: "\ufffd": '),
    ],
)
def test_bad_label_selectors_are_400(text: str, message: str) -> None:
    with pytest.raises(ApiError) as e:
        make_filter("Service", text, "")
    assert e.value.code == 400
    assert e.value.message.startswith(message)
