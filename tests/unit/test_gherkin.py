"""The Gherkin parser the conformance features run with: the vendored features as Cucumber
reads them, outlines filled in, every step defined exactly once, and any text either parsed
or refused with a ParseError (Hypothesis), features it writes read back the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.e2e.ingress_conformance import gherkin, steps
from tests.e2e.ingress_conformance.gherkin import ParseError, Step

FEATURES = Path(__file__).parents[1] / "e2e" / "ingress_conformance"


def load(stem: str) -> gherkin.Feature:
    return gherkin.parse((FEATURES / f"{stem}.feature").read_text())


def test_the_vendored_features_compile_as_cucumber_does() -> None:
    counts = {p.stem: len(gherkin.pickles(load(p.stem))) for p in FEATURES.glob("*.feature")}
    # load_balancing's outline has no Examples: one plain scenario
    assert counts == {
        "default_backend": 6,
        "host_rules": 6,
        "ingress_class": 1,
        "load_balancing": 1,
        "path_rules": 16,
    }
    host_rules = load("host_rules")
    assert host_rules.tags == ("@sig-network", "@conformance", "@release-1.19")
    assert [s.text for s in host_rules.background][1] == (
        'a self-signed TLS secret named "conformance-tls" for the "foo.bar.com" hostname'
    )
    doc = host_rules.background[2].doc
    assert doc is not None and doc.startswith("apiVersion: networking.k8s.io/v1\nkind: Ingress")
    assert '    - host: "*.foo.com"' in doc  # indentation kept past the delimiter's
    assert host_rules.scenarios[1].description == ("(host foo.bar.com matches request foo.bar.com)")


def test_outline_rows_fill_text_and_leave_unknown_placeholders() -> None:
    put = gherkin.pickles(load("default_backend"))[3]
    texts = [s.text for s in put.steps]
    assert texts[0] == 'I send a "PUT" request to http://""/"resource"'
    assert "the response headers must contain <key> with matching <value>" in texts
    table = put.steps[4].table
    assert table is not None and table[0] == ("key", "value") and len(table) == 5
    assert put.line == 44


def test_every_step_of_the_features_has_exactly_one_definition() -> None:
    for path in FEATURES.glob("*.feature"):
        feature = gherkin.parse(path.read_text())
        for s in feature.background + tuple(x for p in gherkin.pickles(feature) for x in p.steps):
            found = [p for p, _ in steps._STEPS if p.fullmatch(s.text)]
            assert len(found) == 1, (path.name, s.text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no Feature:"),
        ("Scenario: x\n  Given y", "before Feature:"),
        ("Feature: f\n  Given y", "a step outside"),
        ('Feature: f\nScenario: s\n  Given y\n  """\n  open', "not closed"),
        ("Feature: f\nScenario: s\n  Given y\n  | a | b\n", "must end with |"),
        ("Feature: f\nScenario: s\n  Given y\n  | a |\n  | b | c |\n", "number of cells"),
        ("Feature: f\nScenario: s\n  Given y\n  free text", "after the steps"),
        ("Feature: f\nRule: r", "Rule: is not supported"),
        ("Feature: f\nScenario: s\n  Given y\nExamples:\n", "with no table"),
        ("Feature: f\nExamples:\n  | a |\n", "outside a scenario"),
        ("Feature: f\nScenario: s\n@t", "tags with nothing"),
        ("Feature: f\nFeature: g", "a second Feature"),
    ],
)
def test_malformed_features_are_refused_with_their_line(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        gherkin.parse(text)


def test_escapes_in_tables_and_doc_strings() -> None:
    text = (
        "Feature: f\nScenario: s\n  Given a table\n    | a\\|b | c\\\\ | d\\ne |\n"
        '  And a doc\n    """\n    x \\"\\"\\" y\n      z\n    """\n'
    )
    sc = gherkin.parse(text).scenarios[0]
    assert sc.steps[0].table == (("a|b", "c\\", "d\ne"),)
    assert sc.steps[1].doc == 'x """ y\n  z'


@settings(max_examples=400)
@given(st.text(max_size=400))
def test_any_text_parses_or_is_refused(text: str) -> None:
    try:
        feature = gherkin.parse(text)
    except ParseError:
        return
    gherkin.pickles(feature)


keywords = st.sampled_from(
    ["Feature:", "Background:", "Scenario:", "Scenario Outline:", "Examples:", "Given ",
     "And ", "| a | <b> |", '"""', "@tag", "# c", "text", "", "|", "\\|"]
)  # fmt: skip


@settings(max_examples=400)
@given(st.lists(st.tuples(keywords, st.text(max_size=8)), max_size=30))
def test_lines_of_keywords_parse_or_are_refused(lines: list[tuple[str, str]]) -> None:
    text = "\n".join(k + rest for k, rest in lines)
    try:
        feature = gherkin.parse(text)
    except ParseError:
        return
    gherkin.pickles(feature)


word = st.text(alphabet="abcdefghij -_/", min_size=1, max_size=12).map(str.strip).filter(bool)
cell = st.text(alphabet="abc |\\", max_size=6).map(str.strip)


def _escape(c: str) -> str:
    return c.replace("\\", "\\\\").replace("|", "\\|")


@st.composite
def features(draw: st.DrawFn) -> tuple[str, list[tuple[str, list[tuple[str, str | None]]]]]:
    """A feature's text and what it holds: scenarios, each a list of (step, doc or table)."""
    out = ["@t @u", "Feature: " + draw(word)]
    scenarios = []
    for _ in range(draw(st.integers(1, 4))):
        name = draw(word)
        out.append(f"  Scenario: {name}")
        body = []
        for _ in range(draw(st.integers(1, 4))):
            text = draw(word)
            out.append(f"    Given {text}")
            extra: str | None = None
            if draw(st.booleans()):
                lines = draw(st.lists(st.text(alphabet="xyz <>", max_size=6), max_size=3))
                out += ['      """', *(f"      {ln}" for ln in lines), '      """']
                extra = "\n".join(lines)
            elif draw(st.booleans()):
                row = draw(st.lists(cell, min_size=1, max_size=3))
                out.append("      | " + " | ".join(_escape(c) for c in row) + " |")
                extra = repr(tuple(row))
            body.append((text, extra))
        scenarios.append((name, body))
    return "\n".join(out) + "\n", scenarios


@given(features())
def test_written_features_read_back(case: tuple[str, list]) -> None:
    text, want = case
    feature = gherkin.parse(text)
    got = []
    for sc in feature.scenarios:
        body = []
        for s in sc.steps:
            extra = s.doc if s.doc is not None else repr(s.table[0]) if s.table else None
            body.append((s.text, extra))
        got.append((sc.name, body))
    assert got == want
    assert all(isinstance(s, Step) for p in gherkin.pickles(feature) for s in p.steps)
