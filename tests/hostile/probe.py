"""/healthz latency, measured from a separate process with its own keep-alive connection, so
that the process sending hostile requests does not distort it.

    with HealthzProbe(port, ca_file) as probe:
        t0 = time.monotonic(); ...; t1 = time.monotonic()
        stats = probe.window(t0, t1)     # p50 and max of the probes that overlap [t0, t1]

The child (`python -m tests.hostile.probe PORT CA INTERVAL OUT`) GETs /healthz every
INTERVAL seconds and appends `start latency ok` lines (CLOCK_MONOTONIC, shared by all
processes) to OUT. A probe that is still waiting at the end of a window is waited for.
"""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class Stats:
    count: int
    p50_ms: float
    max_ms: float
    failed: int  # probes that got no 200

    def __str__(self) -> str:
        text = f"{self.count} probes, p50 {self.p50_ms:.1f} ms, max {self.max_ms:.1f} ms"
        return text + (f", {self.failed} failed" if self.failed else "")


class HealthzProbe:
    def __init__(self, port: int, ca_file: Path, interval: float = 0.01) -> None:
        self.port, self.ca_file, self.interval = port, ca_file, interval
        fd, name = tempfile.mkstemp(prefix="healthz-", suffix=".txt")
        os.close(fd)
        self.out = Path(name)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> HealthzProbe:
        self.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        args = [str(self.port), str(self.ca_file), str(self.interval), str(self.out)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile.probe", *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while not self.samples():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the /healthz probe did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        self.out.unlink(missing_ok=True)

    def samples(self) -> list[tuple[float, float, bool]]:
        """(start, latency in seconds, answered 200) of every finished probe so far."""
        try:
            text = self.out.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3:
                out.append((float(parts[0]), float(parts[1]), parts[2] == "1"))
        return out

    def window(self, t0: float, t1: float, wait: float = 120.0) -> Stats:
        """The probes that overlap [t0, t1] (monotonic clock), once a probe that started after
        t1 has finished; a probe still waiting after `wait` seconds counts as that long."""
        deadline = time.monotonic() + wait
        while True:
            samples = self.samples()
            if any(start > t1 for start, _, _ in samples):
                break
            if time.monotonic() > deadline:
                last_end = max((s + lat for s, lat, _ in samples), default=t0)
                samples.append((last_end, time.monotonic() - last_end, False))
                break
            time.sleep(0.01)
        inside = [(lat, ok) for start, lat, ok in samples if start <= t1 and start + lat >= t0]
        if not inside:  # shorter than one interval: the first probe after it
            inside = [(lat, ok) for start, lat, ok in samples if start > t1][:1]
        if not inside:
            return Stats(0, 0.0, 0.0, 0)
        lats = [lat for lat, _ in inside]
        failed = sum(1 for _, ok in inside if not ok)
        return Stats(len(lats), statistics.median(lats) * 1000, max(lats) * 1000, failed)


def _run(port: int, ca_file: str, interval: float, out: str) -> None:
    ctx = ssl.create_default_context(cafile=ca_file)
    conn: http.client.HTTPSConnection | None = None
    running = True

    def stop(_signum: int, _frame: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    with open(out, "a", buffering=1) as f:
        while running:
            start = time.monotonic()
            ok = False
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=600)
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                ok = resp.read() == b"ok" and resp.status == 200
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
                if not running:
                    break
            f.write(f"{start:.6f} {time.monotonic() - start:.6f} {int(ok)}\n")
            time.sleep(max(0.0, interval - (time.monotonic() - start)))


if __name__ == "__main__":
    _run(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4])
