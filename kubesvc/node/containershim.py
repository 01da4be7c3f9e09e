"""The container shim (conmon's role): one process per container, in its own session, so
containers outlive a restart of the node agent. The runtime keeps one of these running in
serve mode and asks it for a shim per container, which it forks (a millisecond, where a
new interpreter costs 15-20 ms of CPU):

    python -I -S containershim.py --serve

reads one JSON request a line (`command`, `env`, `cwd`, `exit_file`, `log_file`, `stdin`,
`pid_ns`)
and answers `{"pid": N}` with the new shim's pid; it exits when its input ends. A shim can
also be started directly (the runtime falls back to this):

    python -I -S containershim.py [--pid-ns=FILE] EXIT_FILE LOG_FILE LC_CTYPE STDIN COMMAND...

With a PID namespace (the pod's, held by its pause), the command starts in it.

STDIN ("-" for none) is a FIFO that becomes the command's stdin (a container with `stdin:
true`; what `kubectl attach -i` writes reaches it). The shim keeps the FIFO open for writing
so the command does not see its end while nobody is attached, until SIGUSR1 tells it to let
go (`stdinOnce`: the first attach has ended); the command then reads end of file once the
last writer is gone. Without STDIN the command's stdin is /dev/null.

It runs COMMAND with stdout and stderr on two pipes and writes what comes out to LOG_FILE
as CRI records (`<RFC3339Nano> <stdout|stderr> <F|P> <text>`, what containerd writes and
the kubelet reads): a line is one full (F) record; a line longer than 16 KiB is cut into
partial (P) records and ends with an F one; an unfinished line that waits more than 0.1 s
is written as a P record, so `kubectl attach` sees a prompt. Output is read as it comes,
except that after a read that emptied the pipe it gathers for 10 ms: a container that
writes a line per request costs its shim a hundred wakeups a second, not one a line. It
forwards SIGTERM and SIGINT to the command and, once the command exits, writes its exit
status (128+N for signal N, as a shell reports it) to EXIT_FILE. LC_CTYPE is "-" unless
the container's environment sets it: Python's locale coercion adds one, which must not
reach the container.

Standard library only, and only modules that load fast (`_signal` rather than `signal`,
which imports enum): it starts once per container.
"""

import _signal
import errno
import fcntl
import os
import select
import sys
import time

MAX_RECORD = 16 * 1024  # bytes of text in one record (containerd's buffer)
FLUSH_NS = 100_000_000  # how long an unfinished line waits before it is written (P record)
READ_CHUNK = 64 * 1024
# after a read that emptied the pipe, output gathers this long before the next one: a
# container that writes a line per request (an access log) wakes its shim a hundred times
# a second instead of once a line (a wakeup costs ~0.1 ms of CPU, a line 70 ns), and a
# full pipe is read again at once
GATHER_S = 0.01
# a stream that brings this much in one read gets a pipe of BIG_PIPE bytes (from 64 KiB),
# so its writer never waits for the shim (HAProxy's log drops a line rather than wait)
BUSY_READ = 16 * 1024
BIG_PIPE = 1024 * 1024


def timestamp(ns: int) -> bytes:
    """RFC3339Nano in UTC (Go's format: trailing zeros of the fraction dropped)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return (text + "Z").encode()


class CriFramer:
    """One stream's bytes as CRI records. `pending` is an unfinished line (written since
    `pending_since`, in ns); `open_line` is true after a P record, until the F record that
    ends the line."""

    def __init__(self, stream: bytes) -> None:
        self.stream = stream
        self.pending = b""
        self.pending_since = 0
        self.open_line = False

    def _record(self, ts: bytes, tag: bytes, text: bytes) -> bytes:
        self.open_line = tag == b"P"
        return b"%s %s %s %s\n" % (ts, self.stream, tag, text)

    def feed(self, data: bytes, now_ns: int) -> bytes:
        """Records for every line `data` completes, and for whole 16 KiB pieces of a longer
        line; the rest waits."""
        buffer = self.pending + data
        ts = timestamp(now_ns)
        full = b"%s %s F " % (ts, self.stream)
        out = []
        start = 0
        while True:
            # every line up to the last newline within 16 KiB is a whole record: all of
            # them at once (one replace, not a record a line: a busy access log)
            end = buffer.rfind(b"\n", start, start + MAX_RECORD + 1)
            if end >= 0:
                out.append(full + buffer[start:end].replace(b"\n", b"\n" + full) + b"\n")
                self.open_line = False
                start = end + 1
            elif len(buffer) - start > MAX_RECORD:
                out.append(self._record(ts, b"P", buffer[start : start + MAX_RECORD]))
                start += MAX_RECORD
            else:
                break
        if buffer[start:] and (start or not self.pending):
            self.pending_since = now_ns  # a new unfinished line
        self.pending = buffer[start:]
        return b"".join(out)

    def flush(self, now_ns: int) -> bytes:
        """The unfinished line so far, as a P record (nothing if there is none)."""
        if not self.pending:
            return b""
        text, self.pending = self.pending, b""
        return self._record(timestamp(now_ns), b"P", text)

    def end(self, now_ns: int) -> bytes:
        """The stream has ended: an unfinished line is a full record, as containerd writes
        the last line; a line left open by P records is closed by an empty F record."""
        if self.pending:
            text, self.pending = self.pending, b""
            return self._record(timestamp(now_ns), b"F", text)
        if self.open_line:
            return self._record(timestamp(now_ns), b"F", b"")
        return b""


def _spawn(command: list[str], stdin: int, out_w: int, err_w: int) -> int:
    """The command with its stdin, stdout and stderr on these and signals as a fresh
    process has them (posix_spawn: no copy of this process is made). OSError if it cannot
    start."""
    return os.posix_spawnp(
        command[0],
        command,
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ],
        setsigdef=(
            _signal.SIGPIPE,
            _signal.SIGXFSZ,
            _signal.SIGTERM,
            _signal.SIGINT,
            _signal.SIGUSR1,
            _signal.SIGCHLD,
        ),
    )


class _Stdin:
    """The command's end of its stdin FIFO (or /dev/null), and the writer the shim holds."""

    def __init__(self, fifo: str | None) -> None:
        self.held = -1
        if not fifo:
            self.reader = os.open(os.devnull, os.O_RDONLY)
            return
        # a reader first (without waiting for a writer), then the writer that keeps it open
        self.reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.held = os.open(fifo, os.O_WRONLY)
        os.set_blocking(self.reader, True)
        _signal.signal(_signal.SIGUSR1, lambda _signum, _frame: self.let_go())

    def let_go(self) -> None:
        if self.held >= 0:
            os.close(self.held)
            self.held = -1


def _failed_start(log: int, command: list[str], e: OSError) -> int:
    """What a shell says and returns for a command it cannot start: 127 for one that is
    not there, 126 otherwise."""
    missing = e.errno in (errno.ENOENT, errno.ENOTDIR)
    reason = "not found" if missing else (e.strerror or str(e)).lower()
    framer = CriFramer(b"stderr")
    message = f"kubesvc-shim: {command[0]}: {reason}\n".encode(errors="replace")
    _write(log, framer.feed(message, time.time_ns()))
    return 127 if missing else 126


def _write(fd: int, data: bytes) -> None:
    """Append to the log; a full disk loses output but never stops the container."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except OSError:
            return


CLONE_NEWPID = 0x20000000


def enter_pid_namespace(path: str) -> None:
    """Make this process's children start in the PID namespace at `path` (the pod's):
    the container is then the shim's own child, which it signals and waits for. nsenter
    cannot do this part: entering a PID namespace, it forks and stays between."""
    import ctypes  # only here: imported by the server once, before it forks shims

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWPID) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
    finally:
        os.close(fd)


def run(
    exit_file: str,
    log_file: str,
    command: list[str],
    stdin_fifo: str | None = None,
    pid_ns: str | None = None,
) -> int:
    log = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        if pid_ns:
            enter_pid_namespace(pid_ns)
        stdin = _Stdin(stdin_fifo)
        pid = _spawn(command, stdin.reader, out_w, err_w)
    except OSError as e:
        return _finish(exit_file, _failed_start(log, command, e))
    finally:
        os.close(out_w)
        os.close(err_w)
    os.close(stdin.reader)
    for sig in (_signal.SIGTERM, _signal.SIGINT):
        _signal.signal(sig, lambda signum, _frame: _forward(pid, signum))
    framers = {out_r: CriFramer(b"stdout"), err_r: CriFramer(b"stderr")}
    pidfd = os.pidfd_open(pid)
    grown: set[int] = set()
    status: int | None = None
    while status is None:
        now = time.time_ns()
        due = [f.pending_since + FLUSH_NS for f in framers.values() if f.pending]
        if due and min(due) <= now:
            _write(log, b"".join(f.flush(now) for f in framers.values() if f.pending))
            continue
        timeout = (min(due) - now) / 1e9 if due else None
        ready, _, _ = select.select([*framers, pidfd], [], [], timeout)
        now = time.time_ns()
        read_some = read_full = False
        for fd in ready:
            if fd == pidfd:
                status = os.waitpid(pid, 0)[1]
                continue
            data = os.read(fd, READ_CHUNK)
            if data:
                _write(log, framers[fd].feed(data, now))
                read_some, read_full = True, read_full or len(data) == READ_CHUNK
                if len(data) >= BUSY_READ and fd not in grown:
                    grown.add(fd)
                    _grow_pipe(fd)
            else:  # the command closed it (it may go on running)
                _write(log, framers.pop(fd).end(now))
                os.close(fd)
        if read_some and not read_full and status is None:
            select.select([pidfd], [], [], GATHER_S)  # the command's exit ends it early
    # the command is gone: what it left in the pipes, then the end of each stream
    for fd, framer in framers.items():
        os.set_blocking(fd, False)
        try:
            while data := os.read(fd, READ_CHUNK):
                _write(log, framer.feed(data, time.time_ns()))
        except BlockingIOError:
            pass  # a process the command left behind still holds the pipe
        _write(log, framer.end(time.time_ns()))
        os.close(fd)
    os.close(log)
    code = os.waitstatus_to_exitcode(status)
    return _finish(exit_file, 128 - code if code < 0 else code)


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, BIG_PIPE)
    except OSError:  # over the user's pipe quota: the pipe keeps its size
        return


def _finish(exit_file: str, code: int) -> int:
    with open(exit_file + ".tmp", "w") as f:
        f.write(f"{code}\n")
    os.replace(exit_file + ".tmp", exit_file)
    return code


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError:  # it has exited already
        return


def serve() -> int:
    """Fork a shim for each request on stdin until it ends."""
    import ctypes  # noqa: F401 - loaded once here, for every shim that enters a PID namespace
    import json  # only here: a shim started directly does without

    _signal.signal(_signal.SIGCHLD, _signal.SIG_IGN)  # the shims reap themselves away
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            command = [str(a) for a in request["command"]]
            env = {str(k): str(v) for k, v in request["env"].items()}
            cwd, exit_file, log_file = request["cwd"], request["exit_file"], request["log_file"]
            stdin, pid_ns = request.get("stdin"), request.get("pid_ns")
            if not command:
                raise ValueError("no command")
            started_r, started_w = os.pipe()
            pid = os.fork()
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:
            sys.stdout.write(json.dumps({"error": str(e)}) + "\n")
            sys.stdout.flush()
            continue
        if pid == 0:
            code = 127
            try:
                os.close(started_r)
                os.setsid()  # before the answer: the runtime signals the shim's group
                os.close(started_w)
                code = _shim(command, env, cwd, exit_file, log_file, stdin, pid_ns)
            finally:
                os._exit(code)
        os.close(started_w)
        os.read(started_r, 1)  # end of file once the shim has its session
        os.close(started_r)
        sys.stdout.write(json.dumps({"pid": pid}) + "\n")
        sys.stdout.flush()
    return 0


def _shim(
    command: list[str],
    env: dict[str, str],
    cwd: str | None,
    exit_file: str,
    log_file: str,
    stdin: str | None,
    pid_ns: str | None = None,
) -> int:
    """In a child of the server, in a session of its own: become a shim."""
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)  # its complaints
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    return run(exit_file, log_file, command, stdin, pid_ns)


def main(argv: list[str]) -> int:
    if argv[1:] == ["--serve"]:
        return serve()
    pid_ns = None
    if len(argv) > 1 and argv[1].startswith("--pid-ns="):
        pid_ns, argv = argv[1].split("=", 1)[1], argv[:1] + argv[2:]
    if len(argv) < 6:
        sys.stderr.write(
            "usage: containershim.py [--pid-ns=FILE] EXIT_FILE LOG_FILE LC_CTYPE STDIN COMMAND...\n"
        )
        return 2
    exit_file, log_file, lc_ctype, stdin, command = argv[1], argv[2], argv[3], argv[4], argv[5:]
    if lc_ctype == "-":
        os.environ.pop("LC_CTYPE", None)
    else:
        os.environ["LC_CTYPE"] = lc_ctype
    return run(exit_file, log_file, command, None if stdin == "-" else stdin, pid_ns)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
