"""`kubesvc demo [--lang ko|en] [--step N] [--pause]`: a fresh cluster, then every step."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from kubesvc.cluster.lifecycle import home
from kubesvc.tour.runner import GRACE, ClaimFailed, Tour
from kubesvc.tour.steps import STEPS


def demo(
    cluster: str = "demo", lang: str = "en", step: int | None = None, pause: bool = False
) -> int:
    """0 when every claim held; 1 when one did not (the tour stops there)."""
    if shutil.which("kubectl") is None:
        print("kubectl is not installed: apt-get install kubectl", file=sys.stderr)
        return 1
    if step is not None and not 1 <= step <= len(STEPS):
        print(f"kubesvc demo: --step is 1-{len(STEPS)}", file=sys.stderr)
        return 2
    t = Tour(cluster, lang, pause)
    t.facts["cluster_dir"] = str(home() / cluster)
    t.out(
        "\033[1m클러스터를 새로 띄운다: 노드 2개, 노드와 파드는 네트워크 네임스페이스\033[0m"
        if lang == "ko"
        else "\033[1mA fresh 2-node cluster: nodes and pods are network namespaces\033[0m"
    )
    cli = [sys.executable, "-m", "kubesvc.cli.main"]
    subprocess.run([*cli, "down", "--name", cluster], check=False, capture_output=True)
    # a failed node is noticed in GRACE s and its pods evicted 10 s later (upstream: 50 s
    # and 5 minutes), so step 9 need not wait
    up = subprocess.run(
        [
            *cli,
            "up",
            "--name",
            cluster,
            "--node-monitor-grace-period",
            str(GRACE),
            "--default-unreachable-toleration-seconds",
            "10",
            "--default-not-ready-toleration-seconds",
            "10",
            # the notes keep Service objects in etcd: so does the tour's cluster (step 5)
            "--store",
            "etcd",
        ],
        check=False,
    )
    if up.returncode != 0:
        return up.returncode
    for number, run in enumerate(STEPS, 1):
        if step is not None and number > step:
            break
        t.quiet = step is not None and number < step
        try:
            run(t)
        except ClaimFailed as e:
            t.quiet = False
            t.out(f"\n\033[31m✗ [{number}] {e}\033[0m")
            return 1
    t.quiet = False
    kubesvc = os.path.join(os.path.dirname(sys.executable), "kubesvc")
    t.out(
        f"\n{len(t.checks)}개의 주장을 모두 확인했다. 클러스터는 계속 돈다. 다음에 해 볼 것:"
        if lang == "ko"
        else f"\nAll {len(t.checks)} claims held. The cluster keeps running; try next:"
    )
    t.out(f"  kubectl --context {t.context} get all")
    t.out(f"  {kubesvc} trace --name {cluster} --from client kubia")
    t.out(f"  {kubesvc} explain svc kubia --name {cluster}")
    t.out(f"  {kubesvc} down --name {cluster}     # remove everything it created")
    return 0
