"""`kubesvc trace`: parse, observe, explain, print."""

from __future__ import annotations

import asyncio
import json
import sys

from kubesvc.trace import target as targets
from kubesvc.trace.explain import explain
from kubesvc.trace.run import TraceError, observe, open_cluster


def trace(
    cluster_name: str,
    source: str,
    target_text: str,
    output: str = "text",
    resolve: str | None = None,
) -> int:
    """0 when the request got an HTTP answer, 1 when it failed (the report says why), 2
    when it could not be made."""
    try:
        target = targets.parse(target_text)
        address = targets.resolve_override(resolve, target) if resolve else None
        cluster = open_cluster(cluster_name)
        obs, objects = asyncio.run(observe(cluster, source, target, address))
    except (targets.BadTarget, TraceError) as e:
        print(f"kubesvc trace: {e}", file=sys.stderr)
        return 2
    report = explain(obs, objects)
    if output == "json":
        doc = {
            "from": source,
            "target": target_text,
            "proxyMode": obs.proxy_mode,
            **report.as_dict(),
        }
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(f"trace from {obs.source.kind} {obs.source.name} ({obs.source.ip}) to {target.url}")
        print(report.text(), end="")
    return 0 if report.ok else 1


def explain_service(cluster_name: str, namespace: str, name: str, output: str = "text") -> int:
    """0 when nothing looks wrong, 1 when problems are flagged, 2 when it cannot be read."""
    from kubesvc.trace.run import gather_service
    from kubesvc.trace.service import service_report

    try:
        cluster = open_cluster(cluster_name)
        got = asyncio.run(gather_service(cluster, namespace, name))
    except TraceError as e:
        print(f"kubesvc explain: {e}", file=sys.stderr)
        return 2
    report = service_report(
        got["svc"], got["pods"], got["slices"], got["dns"], got["rules"], got["listening"]
    )
    if output == "json":
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.text(), end="")
    return 1 if report.problems else 0
