"""Container logs (`/containerLogs`): PodLogOptions, the stored line formats, tail, since,
limitBytes and following.

Container log files hold either CRI lines (`<RFC3339Nano> <stdout|stderr> <F|P> <text>`) or
plain lines; plain lines carry no timestamp, so `timestamps`/`sinceSeconds` skip them.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubesvc.kubelet.errors import flag

STREAM_CHUNK = 32 * 1024
FOLLOW_POLL = 0.1  # seconds between reads of a followed log file

_CRI_LINE = re.compile(
    rb"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})) "
    rb"(stdout|stderr) ([FP]) (.*)$",
    re.S,
)


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since: datetime.datetime | None = None
    limit_bytes: int | None = None


@dataclass(frozen=True)
class LogLine:
    content: bytes  # the text as the container wrote it, newline included for full lines
    timestamp: bytes = b""  # RFC3339Nano as stored; empty for plain lines

    def render(self, timestamps: bool) -> bytes:
        if timestamps and self.timestamp:
            return self.timestamp + b" " + self.content
        return self.content


def parse_timestamp(text: str) -> datetime.datetime:
    """RFC3339 with up to nanosecond precision (Python keeps microseconds)."""
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})", text)
    if m is None:
        raise ValueError(f"invalid timestamp {text!r}")
    base, frac, zone = m.groups()
    micro = (frac or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone == "Z" else zone
    return datetime.datetime.fromisoformat(f"{base}.{micro}{zone}")


def parse_log_options(query: Any, now: datetime.datetime | None = None) -> LogOptions:
    """The kubelet's containerLogs query (PodLogOptions); ValueError on a bad value."""

    def number(name: str, minimum: int) -> int | None:
        raw = query.get(name)
        if raw in (None, ""):
            return None
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{name}: invalid value {raw!r}: must be an integer") from None
        if value < minimum:
            raise ValueError(f"{name}: invalid value {value}: must be at least {minimum}")
        return value

    tail = number("tailLines", 0)
    since_seconds = number("sinceSeconds", 1)
    since: datetime.datetime | None = None
    if since_seconds is not None:
        since = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(
            seconds=since_seconds
        )
    if query.get("sinceTime"):
        if since is not None:
            raise ValueError("at most one of `sinceTime` or `sinceSeconds` may be specified")
        since = parse_timestamp(query["sinceTime"])
    return LogOptions(
        follow=flag(query.get("follow")),
        previous=flag(query.get("previous")),
        timestamps=flag(query.get("timestamps")),
        tail_lines=tail,
        since=since,
        limit_bytes=number("limitBytes", 1),
    )


def parse_log_line(raw: bytes) -> LogLine:
    """One stored line (newline included if it had one) -> what the container wrote."""
    newline = raw.endswith(b"\n")
    body = raw[:-1] if newline else raw
    m = _CRI_LINE.match(body)
    if m is None:
        return LogLine(raw)
    ts, _stream, tag, text = m.groups()
    # a partial ("P") record continues in the next record: no newline of its own
    return LogLine(text + (b"\n" if tag == b"F" else b""), ts)


def record_stream(raw: bytes) -> bytes:
    """b"stdout" or b"stderr": the stream a stored line was written on (plain lines have
    no record of it and count as stdout)."""
    m = _CRI_LINE.match(raw[:-1] if raw.endswith(b"\n") else raw)
    return m.group(2) if m is not None else b"stdout"


def line_wanted(line: LogLine, since: datetime.datetime | None) -> bool:
    if since is None or not line.timestamp:
        return True
    try:
        return parse_timestamp(line.timestamp.decode()) >= since
    except ValueError:
        return True


def tail_offset(f: Any, lines: int, block: int = 64 * 1024) -> int:
    """Byte offset where the last `lines` complete lines of an open binary file begin."""
    f.seek(0, os.SEEK_END)
    end = f.tell()
    if lines == 0:
        return end
    pos, seen = end, 0
    skip_last = True  # the newline ending the file ends the last line, it does not start it
    while pos > 0:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        chunk = f.read(step)
        for i in range(len(chunk) - 1, -1, -1):
            if chunk[i] != 0x0A:
                skip_last = False
                continue
            if skip_last and pos + i == end - 1:
                skip_last = False
                continue
            seen += 1
            if seen == lines:
                return pos + i + 1
    return 0


class LogLimit:
    """Cuts output at limitBytes."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit

    def take(self, data: bytes) -> bytes:
        if self.left is None:
            return data
        data = data[: self.left]
        self.left -= len(data)
        return data

    @property
    def done(self) -> bool:
        return self.left is not None and self.left <= 0


async def stream_log(
    path: Path,
    opts: LogOptions,
    write: Callable[[bytes], Awaitable[None]],
    still_current: Callable[[], bool] = lambda: True,
) -> None:
    """Write the log (its tail, then new lines while following) through `write`. Following
    stops when `still_current()` turns false (the container instance is gone)."""
    limit = LogLimit(opts.limit_bytes)
    with open(path, "rb") as f:
        start = 0 if opts.tail_lines is None else tail_offset(f, opts.tail_lines)
        f.seek(start)
        pending = b""
        while not limit.done:
            chunk = f.read(STREAM_CHUNK)
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out = b"".join(_render(raw + b"\n", opts) for raw in lines)
                if out:
                    await write(limit.take(out))
                continue
            if not opts.follow or not still_current():
                if pending and not limit.done:
                    await write(limit.take(_render(pending, opts)))
                return
            if os.fstat(f.fileno()).st_size < f.tell():  # truncated: start over
                f.seek(0)
                pending = b""
            await asyncio.sleep(FOLLOW_POLL)


def _render(raw: bytes, opts: LogOptions) -> bytes:
    line = parse_log_line(raw)
    return line.render(opts.timestamps) if line_wanted(line, opts.since) else b""
