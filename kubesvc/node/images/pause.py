"""The pause image (kubernetes build/pause): sleeps until SIGINT/SIGTERM, reaping children."""

from __future__ import annotations

import os
import signal
import sys

VERSION = "3.10"


def _down(signum: int, _frame: object) -> None:
    sys.stdout.write(f"Shutting down, got signal: {signal.strsignal(signum)}\n")
    sys.stdout.flush()
    os._exit(0)


def _reap(_signum: int, _frame: object) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str]) -> int:
    if argv[:1] == ["-v"]:
        print(f"pause.c {VERSION}", flush=True)
        return 0
    signal.signal(signal.SIGINT, _down)
    signal.signal(signal.SIGTERM, _down)
    signal.signal(signal.SIGCHLD, _reap)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
