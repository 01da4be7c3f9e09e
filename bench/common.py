"""Helpers shared by the benchmark scripts in this directory.

Process readers (/proc RSS and CPU), the `kubesvc apiserver` child process, signal handling
that turns Ctrl-C, SIGTERM and SIGHUP into cleanup, the Markdown table, the JSON results
file and the machine description. The scripts run as `python bench/X.py`, which puts this
directory first on sys.path, so they import it as `common`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on https://[^:\s]+:(\d+)")
PR_SET_PDEATHSIG = 1

R = TypeVar("R")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- results --------------------------------------------------------------------------------


@dataclass
class Results(Generic[R]):
    rows: list[R] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # failures and surprises: exit status 1

    def add(self, row: R) -> None:
        self.rows.append(row)

    def note(self, text: str) -> None:
        log(text)
        self.notes.append(text)


def reference_cell(text: str, reference_is: str, legend: list[str]) -> str:
    """`text [n]`, n being the place of reference_is in legend (added if new)."""
    if not reference_is:
        return text
    if reference_is not in legend:
        legend.append(reference_is)
    return f"{text} [{legend.index(reference_is) + 1}]"


def render_table(
    header: list[str], body: list[list[str]], legend: list[str], notes: Iterable[str]
) -> str:
    """A Markdown table, then the numbered references and the notes."""
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in body]
    if legend:
        out += ["", "References:", ""] + [f"{i}. {text}" for i, text in enumerate(legend, 1)]
    notes = list(notes)
    if notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(out)


@dataclass
class Row:
    """One measurement of kubesvc, with an optional reference and target (the table of the
    API server, cluster and controllers benchmarks; the others compare two columns)."""

    measurement: str
    value: float | None
    unit: str  # "s", "ms", "/s", "MB", "B", "%" or "" (a count)
    reference: float | None = None
    reference_is: str = ""
    target: float | None = None
    higher_is_better: bool = False
    at_least: bool = False  # the value is a lower bound (a wait that timed out)

    @property
    def ok(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        if self.at_least and not self.higher_is_better:
            return False
        if self.higher_is_better:
            return self.value >= self.target
        return self.value <= self.target if self.unit == "" else self.value < self.target


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "/s":
        return f"{value:,.0f} /s" if value >= 100 else f"{value:.1f} /s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "%":
        return f"{value:.0f} %"
    return f"{value:,.0f}" if unit == "" else f"{value:g} {unit}"


def row_cells(row: Row, legend: list[str]) -> list[str]:
    ref = "-"
    if row.reference is not None:
        ref = reference_cell(fmt(row.reference, row.unit), row.reference_is, legend)
    target = "-"
    if row.target is not None:
        sign = "≥ " if row.higher_is_better else ("≤ " if row.unit == "" else "< ")
        target = sign + fmt(row.target, row.unit)
    ok = {None: "-", True: "yes", False: "NO"}[row.ok]
    value = ("> " if row.at_least else "") + fmt(row.value, row.unit)
    return [row.measurement, value, ref, target, ok]


def render_rows(results: Results[Row]) -> str:
    """A Markdown table of Rows, then the references and notes."""
    legend: list[str] = []
    body = [row_cells(row, legend) for row in results.rows]
    header = ["measurement", "kubesvc", "reference", "target", "ok?"]
    return render_table(header, body, legend, results.notes)


def row_dicts(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Rows (dataclasses with an `ok` property) as JSON objects."""
    return [asdict(r) | {"ok": r.ok} for r in rows]


def write_json(path: str, doc: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def report_rows(
    title: str,
    results: Results[Row],
    workload: Any,
    started: str,
    json_path: str | None,
    **versions: Any,
) -> None:
    """Print a bench's heading and table of Rows; write the JSON results file if asked.
    `workload` is the bench's settings dataclass; `versions` go into the machine line."""
    info = machine_info(**versions)
    print(
        f"kubesvc {title} benchmark, {started}, {info['cpus']} CPUs ({info['cpu_model']}), "
        f"Python {info['python']}\n"
    )
    print(render_rows(results), flush=True)
    if json_path:
        doc = {
            "date": started,
            "machine": info,
            "workload": asdict(workload),
            "rows": row_dicts(results.rows),
            "notes": results.notes,
        }
        write_json(json_path, doc)


def exit_status(interrupted: bool, results: Results[Any]) -> int:
    """130 when interrupted, 1 when a target was missed or something was noted, else 0."""
    if interrupted:
        return 130
    return 0 if all(r.ok is not False for r in results.rows) and not results.notes else 1


def machine_info(memory: bool = True, **extra: Any) -> dict[str, Any]:
    """CPUs, CPU model, memory (unless memory=False), kernel and Python, then extra."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {"cpus": os.cpu_count(), "cpu_model": model}
    if memory:
        mem_kb = 0
        with contextlib.suppress(OSError, ValueError):
            mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        info["mem_gb"] = round(mem_kb / 1024 / 1024, 1)
    info["kernel"] = platform.release()
    info["python"] = platform.python_version()
    return info | extra


class Progress:
    """Logs `label done/total` every tenth of the way."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.step = max(1, total // 10)
        self.start = time.perf_counter()

    def tick(self) -> None:
        self.done += 1
        if self.done % self.step == 0 or self.done == self.total:
            dt = time.perf_counter() - self.start
            log(f"{self.label}: {self.done}/{self.total} in {dt:.1f} s ({self.done / dt:,.0f}/s)")


# -- processes ------------------------------------------------------------------------------

_LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """Runs in the child before exec: get SIGKILL if the benchmark process dies."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def child_env(
    extra: dict[str, str] | None = None, base: dict[str, str] | None = None
) -> dict[str, str]:
    """base (default: this environment) with the repository on PYTHONPATH, then extra."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def cluster_env(tmp: Path) -> dict[str, str]:
    """The environment of a bench's own cluster: its home, kubeconfig and kubectl cache all
    in `tmp`, so nothing of the user's is read or written."""
    return dict(
        os.environ,
        KUBESVC_HOME=str(tmp / "home"),
        KUBECONFIG=str(tmp / "kubeconfig"),
        KUBECACHEDIR=str(tmp / "kubecache"),
    )


def kubectl(env: dict[str, str], *args: str, input: str | None = None) -> str:
    """kubectl's output; RuntimeError with its stderr when it fails."""
    res = subprocess.run(["kubectl", *args], input=input, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spawn(cmd: list[str], stdout: Any) -> subprocess.Popen[str]:
    """A child in its own session, in the repository, killed if this process dies."""
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=child_env(),
        stdout=stdout,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def terminate(proc: subprocess.Popen[str] | None) -> None:
    """SIGTERM the process group, SIGKILL it if it has not exited after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class ApiServer:
    """One `kubesvc apiserver` process on a free port; its output is drained by a thread."""

    def __init__(self, data_dir: Path, poll: float = 0.005) -> None:
        self.data_dir = data_dir
        self.poll = poll  # how often start() looks for the "listening" line
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.output: deque[str] = deque(maxlen=200)
        self._listening = threading.Event()

    def start(self, timeout: float = 120.0) -> float:
        """Start the server; returns seconds from spawn until the "listening" line."""
        self._listening.clear()
        cmd = [sys.executable, "-m", "kubesvc.cli.main", "apiserver"]
        cmd += ["--data-dir", str(self.data_dir), "--port", "0"]
        t0 = time.perf_counter()
        self.proc = spawn(cmd, subprocess.PIPE)
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        while not self._listening.wait(self.poll):
            if self.proc.poll() is not None or time.perf_counter() - t0 > timeout:
                self.stop()
                raise RuntimeError("API server did not start:\n" + "".join(self.output))
        return time.perf_counter() - t0

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line)
            m = LISTENING.search(line)
            if m and not self._listening.is_set():
                self.port = int(m.group(1))
                self._listening.set()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def rss_mb(self) -> float:
        return vm_rss_kb(self.pid) / 1024

    def kill9(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None


# -- signals and the main loop --------------------------------------------------------------


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def catch_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP raise KeyboardInterrupt, so that cleanup runs."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Cleanup must finish even when Ctrl-C is pressed again."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_then_clean_up(
    work: Callable[[], None],
    cleanup: Callable[[], None],
    tmp: Path,
    results: Results[Any],
    note_failure: bool = False,
) -> bool:
    """Runs work, then cleanup and the removal of tmp whatever happened (with Ctrl-C and
    SIGTERM ignored meanwhile). Returns whether work was interrupted; an interruption, and
    with note_failure an exception, is noted in results."""
    try:
        work()
    except KeyboardInterrupt:
        results.note("interrupted: the table is incomplete")
        return True
    except Exception as e:
        if not note_failure:
            raise
        results.note(f"FAILED: {type(e).__name__}: {e}")
    finally:
        with signals_ignored():
            cleanup()
            shutil.rmtree(tmp, ignore_errors=True)
    return False


def runner(coro: Coroutine[Any, Any, None]) -> None:
    """Runs coro with uvloop when it is installed, else with asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)
