"""`kubesvc demo` start to finish: every step checks its own claim, so the tour passing
means each claim of the seed's notes held on a live cluster. The whole tour runs in Korean,
the notes' language; one step runs in English. The language picks the narration only
(tests/unit/test_tour_narration.py checks that every line has both), so the claims are
the same in either."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "kubesvc.cli.main"]


def _env(tmp: Path) -> dict[str, str]:
    """The tour's cluster, kubeconfig and kubectl cache under the test's directory."""
    return dict(
        os.environ,
        KUBESVC_HOME=str(tmp / "home"),
        KUBECONFIG=str(tmp / "kubeconfig"),
        KUBECACHEDIR=str(tmp / "kubecache"),
    )


def test_the_tour_runs_and_every_claim_holds(tmp_path: Path) -> None:
    lang = "ko"
    name = f"tour{lang}{secrets.token_hex(2)}"
    env = _env(tmp_path)
    try:
        res = subprocess.run(
            [*CLI, "demo", "--name", name, "--lang", lang],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
        marks = [line for line in res.stdout.splitlines() if "✓" in line]
        assert len(marks) >= 20, res.stdout[-3000:]
        steps = [n for n in range(1, 12) if f"[{n}]" in res.stdout]
        assert steps == list(range(1, 12))
        assert "서비스가 필요한 이유" in res.stdout
    finally:
        subprocess.run([*CLI, "down", "--name", name], env=env, capture_output=True, check=False)


def test_one_step_alone(tmp_path: Path) -> None:
    """--step 3 runs steps 1-2 for what they set up (silently) and shows step 3 only."""
    name = f"tourstep{secrets.token_hex(2)}"
    env = _env(tmp_path)
    try:
        res = subprocess.run(
            [*CLI, "demo", "--name", name, "--step", "3"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        assert "[3] Discovery through DNS" in res.stdout
        marks = [line for line in res.stdout.splitlines() if "✓" in line]
        assert marks and not any(re.search("[\uac00-\ud7a3]", m) for m in marks), marks
        assert "[1]" not in res.stdout and "[2]" not in res.stdout and "[4]" not in res.stdout
        bad = subprocess.run([*CLI, "demo", "--name", name, "--step", "12"], env=env,
                             capture_output=True, text=True)  # fmt: skip
        assert bad.returncode == 2 and "--step is 1-11" in bad.stderr
    finally:
        subprocess.run([*CLI, "down", "--name", name], env=env, capture_output=True, check=False)
