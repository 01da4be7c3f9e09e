"""A small Gherkin parser: what the conformance features use, parsed as Cucumber's own parser
does (English keywords): tags, Feature, Background, Scenario / Example, Scenario Outline /
Template with Examples tables (placeholders filled in step text, doc strings and tables; an
outline with no Examples is one plain scenario, as Cucumber compiles it), steps with a doc
string or a data table, descriptions, comments. `Rule:` and other languages are refused.

Anything else is a ParseError naming the line: never another exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_TEXT = 1 << 20  # a feature file larger than this is refused

STEP_KEYWORDS = ("Given ", "When ", "Then ", "And ", "But ", "* ")
SCENARIO_KEYWORDS = ("Scenario Outline:", "Scenario Template:", "Scenario:", "Example:")
EXAMPLES_KEYWORDS = ("Examples:", "Scenarios:")
DOC_DELIMITERS = ('"""', "```")

Table = tuple[tuple[str, ...], ...]


class ParseError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True)
class Step:
    keyword: str  # as written: Given, When, Then, And, But, *
    text: str
    line: int
    doc: str | None = None
    table: Table | None = None


@dataclass(frozen=True)
class Examples:
    header: tuple[str, ...]
    rows: tuple[tuple[int, tuple[str, ...]], ...]  # (line, cells)
    line: int


@dataclass(frozen=True)
class Scenario:
    name: str
    line: int
    steps: tuple[Step, ...]
    tags: tuple[str, ...] = ()
    description: str = ""
    examples: tuple[Examples, ...] = ()


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    tags: tuple[str, ...]
    background: tuple[Step, ...]
    scenarios: tuple[Scenario, ...]


@dataclass(frozen=True)
class Pickle:
    """One runnable scenario: an outline's example row filled in (the Background apart)."""

    name: str
    line: int  # the scenario's line, or the example row's
    steps: tuple[Step, ...]
    tags: tuple[str, ...]


@dataclass
class _Open:
    """The block being read: its steps, description lines and examples."""

    kind: str  # feature, background, scenario, examples
    line: int
    name: str = ""
    tags: tuple[str, ...] = ()
    steps: list[Step] = field(default_factory=list)
    description: list[str] = field(default_factory=list)
    examples: list[Examples] = field(default_factory=list)
    rows: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)


def parse(text: str) -> Feature:
    if len(text) > MAX_TEXT:
        raise ParseError(1, f"larger than {MAX_TEXT} characters")
    return _Parser(text.splitlines()).feature()


class _Parser:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.i = 0
        self.tags: list[str] = []
        self.feature_block: _Open | None = None
        self.background: tuple[Step, ...] | None = None
        self.scenarios: list[Scenario] = []
        self.block: _Open | None = None  # background, scenario or examples
        self.scenario: _Open | None = None  # the scenario owning an examples block

    def feature(self) -> Feature:
        while self.i < len(self.lines):
            no = self.i + 1
            raw = self.lines[self.i]
            self.i += 1
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("@"):
                self._tags(no, line)
            elif line.startswith("Feature:"):
                self._feature(no, line)
            elif line.startswith("Background:"):
                self._background(no)
            elif line.startswith(SCENARIO_KEYWORDS):
                self._scenario(no, line)
            elif line.startswith(EXAMPLES_KEYWORDS):
                self._examples(no)
            elif line.startswith("Rule:"):
                raise ParseError(no, "Rule: is not supported")
            elif line.startswith(STEP_KEYWORDS):
                self._step(no, line)
            elif line.startswith("|"):
                self._row(no, line)
            elif line.startswith(DOC_DELIMITERS):
                self._doc(no, raw)
            else:
                self._description(no, line)
        if self.feature_block is None:
            raise ParseError(len(self.lines) or 1, "no Feature:")
        if self.tags:
            raise ParseError(len(self.lines), "tags with nothing after them")
        self._close()
        f = self.feature_block
        return Feature(
            name=f.name,
            description="\n".join(f.description),
            tags=f.tags,
            background=self.background or (),
            scenarios=tuple(self.scenarios),
        )

    # ------------------------------------------------------------ blocks

    def _take_tags(self) -> tuple[str, ...]:
        tags, self.tags = tuple(self.tags), []
        return tags

    def _tags(self, no: int, line: str) -> None:
        for word in line.split("#", 1)[0].split():
            if not word.startswith("@") or len(word) == 1:
                raise ParseError(no, f"not a tag: {word!r}")
            self.tags.append(word)

    def _feature(self, no: int, line: str) -> None:
        if self.feature_block is not None:
            raise ParseError(no, "a second Feature:")
        name = line.removeprefix("Feature:").strip()
        self.feature_block = _Open("feature", no, name, self._take_tags())

    def _need_feature(self, no: int, what: str) -> None:
        if self.feature_block is None:
            raise ParseError(no, f"{what} before Feature:")

    def _background(self, no: int) -> None:
        self._need_feature(no, "Background:")
        if self.tags:
            raise ParseError(no, "tags on a Background:")
        if self.background is not None or self.scenarios or self.block is not None:
            raise ParseError(no, "Background: must come once, before the scenarios")
        self.block = _Open("background", no)

    def _scenario(self, no: int, line: str) -> None:
        self._need_feature(no, "Scenario:")
        self._close()
        name = line.split(":", 1)[1].strip()
        self.block = self.scenario = _Open("scenario", no, name, self._take_tags())

    def _examples(self, no: int) -> None:
        if self.scenario is None:
            raise ParseError(no, "Examples: outside a scenario")
        self._close_examples()
        self.tags = []  # tags on Examples select rows in Cucumber; every row runs here
        self.block = _Open("examples", no)

    def _step(self, no: int, line: str) -> None:
        block = self.block
        if block is None or block.kind == "examples":
            raise ParseError(no, "a step outside a Background or Scenario")
        keyword, _, text = line.partition(" ")
        block.steps.append(Step(keyword, text.strip(), no))

    def _row(self, no: int, line: str) -> None:
        cells = _cells(no, line)
        block = self.block
        if block is not None and block.kind == "examples":
            if block.rows and len(cells) != len(block.rows[0][1]):
                raise ParseError(no, "a row with another number of cells than the header")
            block.rows.append((no, cells))
            return
        if block is None or not block.steps:
            raise ParseError(no, "a table row with no step before it")
        last = block.steps[-1]
        if last.doc is not None:
            raise ParseError(no, "a step with both a doc string and a table")
        table = (*(last.table or ()), cells)
        if len(cells) != len(table[0]):
            raise ParseError(no, "a row with another number of cells than the first")
        block.steps[-1] = Step(last.keyword, last.text, last.line, None, table)

    def _doc(self, no: int, raw: str) -> None:
        block = self.block
        if block is None or block.kind == "examples" or not block.steps:
            raise ParseError(no, "a doc string with no step before it")
        last = block.steps[-1]
        if last.doc is not None or last.table is not None:
            raise ParseError(no, "a step with a second doc string or table")
        indent = len(raw) - len(raw.lstrip())
        delimiter = raw.strip()[:3]
        content: list[str] = []
        while True:
            if self.i >= len(self.lines):
                raise ParseError(no, "a doc string that is not closed")
            line = self.lines[self.i]
            self.i += 1
            if line.strip() == delimiter:
                break
            # each line loses up to the opening delimiter's indentation
            lead = len(line) - len(line.lstrip(" \t"))
            line = line[min(lead, indent) :]
            content.append(line.replace("\\" + "\\".join(delimiter), delimiter))
        block.steps[-1] = Step(last.keyword, last.text, last.line, "\n".join(content))

    def _description(self, no: int, line: str) -> None:
        block = self.block or self.feature_block
        if block is None:
            raise ParseError(no, f"unexpected text before Feature: {line[:40]!r}")
        if block.steps or block.rows:
            raise ParseError(no, f"unexpected text after the steps: {line[:40]!r}")
        block.description.append(line)

    # ------------------------------------------------------------ closing

    def _close_examples(self) -> None:
        block, scenario = self.block, self.scenario
        if block is None or block.kind != "examples" or scenario is None:
            return
        if not block.rows:
            raise ParseError(block.line, "Examples: with no table")
        header, rows = block.rows[0][1], tuple(block.rows[1:])
        scenario.examples.append(Examples(header, rows, block.line))
        self.block = scenario

    def _close(self) -> None:
        self._close_examples()
        block = self.block
        if block is None:
            return
        if block.kind == "background":
            self.background = tuple(block.steps)
        elif block.kind == "scenario":
            self.scenarios.append(
                Scenario(
                    name=block.name,
                    line=block.line,
                    steps=tuple(block.steps),
                    tags=block.tags,
                    description="\n".join(block.description),
                    examples=tuple(block.examples),
                )
            )
        self.block = self.scenario = None


_CELL_ESCAPES = {"\\|": "|", "\\\\": "\\", "\\n": "\n"}


def _cells(no: int, line: str) -> tuple[str, ...]:
    if len(line) < 2 or not line.endswith("|") or _odd_escape(line):
        raise ParseError(no, "a table row must end with |")
    cells: list[str] = []
    current: list[str] = []
    i = 1
    while i < len(line):
        two = line[i : i + 2]
        if two in _CELL_ESCAPES:
            current.append(_CELL_ESCAPES[two])
            i += 2
            continue
        if line[i] == "|":
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(line[i])
        i += 1
    return tuple(cells)


def _odd_escape(line: str) -> bool:
    """True when the final `|` is escaped (an odd number of backslashes before it)."""
    run = len(line) - 1 - len(line[:-1].rstrip("\\"))
    return run % 2 == 1


# ---------------------------------------------------------------- pickles

_PLACEHOLDER = re.compile(r"<([^<>]+)>")


def fill(text: str, values: dict[str, str]) -> str:
    """`<name>` replaced by the example's value; placeholders it has no column for stay."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def pickles(feature: Feature) -> list[Pickle]:
    """Each scenario, and each example row of an outline, as Cucumber compiles them."""
    out: list[Pickle] = []
    for sc in feature.scenarios:
        tags = feature.tags + sc.tags
        if not sc.examples:
            out.append(Pickle(sc.name, sc.line, sc.steps, tags))
            continue
        for ex in sc.examples:
            for line, cells in ex.rows:
                values = dict(zip(ex.header, cells, strict=True))
                steps = tuple(_fill_step(s, values) for s in sc.steps)
                out.append(Pickle(fill(sc.name, values), line, steps, tags))
    return out


def _fill_step(step: Step, values: dict[str, str]) -> Step:
    doc = fill(step.doc, values) if step.doc is not None else None
    table = (
        tuple(tuple(fill(c, values) for c in row) for row in step.table)
        if step.table is not None
        else None
    )
    return Step(step.keyword, fill(step.text, values), step.line, doc, table)
