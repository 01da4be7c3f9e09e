"""The Kubernetes documentation's example manifests (`content/en/examples/service/` and
`application/`, in tests/e2e/fixtures/k8s-docs-examples) applied unchanged with the real
kubectl: what a real single-stack IPv4 cluster accepts must apply, and what it rejects must
be rejected with upstream's message. The Gateway API CRDs are installed first, as the
docs' Gateway pages ask."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness import ApiServerProcess

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXAMPLES = FIXTURES / "k8s-docs-examples"
FILES = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.yaml"))

# what upstream (v1.32, IPv4 only, no VolumeSnapshot CRDs) answers instead of applying
NET = "service/networking/"
NO_IPV6 = 'spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster'
NO_IP_FAMILY = 'strict decoding error: unknown field "spec.ipFamily"'
REJECTED = {
    # removed in 1.25
    "application/job/cronjob.yaml": 'no matches for kind "CronJob" in version "batch/v1beta1"',
    # CRDs a plain cluster does not have
    "application/volume-snaphot.yaml": 'no matches for kind "VolumeSnapshot"',
    "application/volume-snapshot-class.yaml": 'no matches for kind "VolumeSnapshotClass"',
    # a template for sed: "$ITEM" is not a valid name
    "application/job/job-tmpl.yaml": 'metadata.name: Invalid value: "process-item-$ITEM"',
    # the field was removed before dual-stack went GA
    NET + "dual-stack-ipv6-svc.yaml": NO_IP_FAMILY,
    NET + "dual-stack-ipv6-lb-svc.yaml": NO_IP_FAMILY,
    # IPv6 is not configured on an IPv4 cluster
    NET + "dual-stack-ipfamilies-ipv6.yaml": NO_IPV6,
    NET + "dual-stack-prefer-ipv6-lb-svc.yaml": NO_IPV6,
    NET + "dual-stack-preferred-ipfamilies-svc.yaml": NO_IPV6,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    """An API server of its own: the examples create cluster-scoped objects too."""
    s = ApiServerProcess(tmp_path_factory.mktemp("docs-examples") / "data")
    s.start()
    try:
        s.out("apply", "--server-side", "-f", str(FIXTURES / "gateway-api"))
        s.out("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize("name", FILES)
def test_example(server: ApiServerProcess, name: str) -> None:
    path = EXAMPLES / name
    ns = "docs-" + hashlib.sha256(name.encode()).hexdigest()[:10]
    server.out("create", "namespace", ns)
    # a manifest that names its namespace is applied there (created first), as the docs do
    named = {
        str(doc["metadata"]["namespace"])
        for doc in yaml.safe_load_all(path.read_text())
        if isinstance(doc, dict) and (doc.get("metadata") or {}).get("namespace")
    }
    for other in named - {"default"}:
        server.out("create", "namespace", other)
    where = [] if named else ["-n", ns]
    try:
        res = server.kubectl("apply", *where, "-f", str(path), check=False)
        if name in REJECTED:
            assert res.returncode != 0, f"{name} applied, upstream rejects it:\n{res.stdout}"
            assert REJECTED[name] in res.stderr, res.stderr
        else:
            assert res.returncode == 0, f"{name}:\n{res.stdout}\n{res.stderr}"
            assert res.stderr.strip() == "" or "Warning:" in res.stderr, res.stderr
            # what was applied reads back
            server.out("get", *where, "-f", str(path))
    finally:
        server.kubectl("delete", *where, "-f", str(path), "--wait=false", check=False)
        server.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        for other in named - {"default"}:  # the next example may name it again
            server.kubectl("delete", "namespace", other, "--timeout=60s", check=False)
