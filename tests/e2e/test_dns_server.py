"""`kubesvc dns` against a real API server, queried with dig and dnspython on 127.0.0.1."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.e2e.harness import ApiServerProcess, spawn, stop_process, wait_for

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    """A port free for both UDP and TCP."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


@dataclass
class DnsProcess:
    port: int
    metrics_port: int
    proc: subprocess.Popen[bytes]

    def dig(self, *args: str) -> str:
        cmd = ["dig", "@127.0.0.1", "-p", str(self.port), "+time=2", "+tries=1", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout

    def short(self, *args: str) -> list[str]:
        return sorted(self.dig("+short", *args).split("\n")[:-1])

    def udp(self, name: str, qtype: str = "A", **kw: object) -> dns.message.Message:
        timeout = kw.pop("lifetime", 2)
        q = dns.message.make_query(name, qtype, **kw)  # type: ignore[arg-type]
        return dns.query.udp(q, "127.0.0.1", port=self.port, timeout=timeout)  # type: ignore[arg-type]

    def http(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


def start_dns(api: ApiServerProcess, log: Path, *args: str) -> DnsProcess:
    port, metrics_port = _free_port(), _free_port()
    cmd = [
        sys.executable,
        "-m",
        "kubesvc.cli.main",
        "dns",
        "--kubeconfig",
        str(api.kubeconfig),
        "--listen",
        f"127.0.0.1:{port}",
        "--metrics",
        f"127.0.0.1:{metrics_port}",
        "--health",
        "",
        "--ready",
        "",
        *args,
    ]
    proc, _ = spawn(cmd, log, r"caches synced", 30)
    return DnsProcess(port, metrics_port, proc)


@pytest.fixture(scope="module")
def server(api: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsProcess]:
    dns_server = start_dns(api, tmp_path_factory.mktemp("dns") / "dns.log")
    try:
        yield dns_server
    finally:
        stop_process(dns_server.proc)


def apply(api: ApiServerProcess, ns: str, *objects: dict[str, object]) -> None:
    items = [{**o, "metadata": {**o["metadata"], "namespace": ns}} for o in objects]  # type: ignore[dict-item]
    api.out(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )


def service(name: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def endpoint_slice(
    svc: str, ips: list[str], hostnames: dict[str, str] | None = None
) -> dict[str, object]:
    hostnames = hostnames or {}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{svc}-1", "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": True}}
            | ({"hostname": hostnames[ip]} if ip in hostnames else {})
            for ip in ips
        ],
    }


def cluster_ip(api: ApiServerProcess, ns: str, name: str) -> str:
    return api.out("get", "service", name, "-n", ns, "-o", "jsonpath={.spec.clusterIP}")


def test_services_headless_srv_ptr_and_external_name(
    api: ApiServerProcess, ns: str, server: DnsProcess
) -> None:
    http = [{"name": "http", "port": 80, "protocol": "TCP"}]
    apply(
        api,
        ns,
        service("web", ports=http),
        service("hl", clusterIP="None", ports=http),
        endpoint_slice("hl", ["10.244.1.5", "10.244.1.6"], {"10.244.1.5": "web-0"}),
        service("ext", type="ExternalName", externalName=f"web.{ns}.svc.cluster.local"),
        service("out", type="ExternalName", externalName="example.com"),
    )
    ip = cluster_ip(api, ns, "web")
    svc = f"web.{ns}.svc.cluster.local"
    wait_for(lambda: server.short(svc) == [ip], timeout=5, what="the service's A record")
    assert server.short(f"Web.{ns.upper()}.SVC.cluster.local") == [ip]
    assert server.short(f"_http._tcp.{svc}", "SRV") == [f"0 100 80 {svc}."]
    assert server.short("-x", ip) == [f"{svc}."]
    hl = f"hl.{ns}.svc.cluster.local"
    assert server.short(hl) == ["10.244.1.5", "10.244.1.6"]
    assert server.short(f"web-0.{hl}") == ["10.244.1.5"]
    assert server.short(f"10-244-1-6.{hl}") == ["10.244.1.6"]
    assert server.short(f"_http._tcp.{hl}", "SRV") == [
        f"0 50 8080 10-244-1-6.{hl}.",
        f"0 50 8080 web-0.{hl}.",
    ]
    assert server.short("-x", "10.244.1.5") == [f"web-0.{hl}."]
    assert server.short(f"ext.{ns}.svc.cluster.local") == [ip, f"{svc}."]
    assert server.short(f"out.{ns}.svc.cluster.local") == ["example.com."]
    assert server.short(f"10-244-9-9.{ns}.pod.cluster.local") == ["10.244.9.9"]
    assert server.short("dns-version.cluster.local", "TXT") == ['"1.1.0"']


def test_nxdomain_nodata_and_refused(api: ApiServerProcess, ns: str, server: DnsProcess) -> None:
    apply(api, ns, service("web", ports=[{"port": 80}]))
    svc = f"web.{ns}.svc.cluster.local"
    wait_for(lambda: server.short(svc), timeout=5, what="the service")
    nodata = server.udp(svc, "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].to_text().startswith("cluster.local. 5 IN SOA ns.dns.cluster.local.")
    missing = (
        f"nope.{ns}.svc.cluster.local",
        "web.nonexistent-ns.svc.cluster.local",
        f"{svc}.{ns}.svc.cluster.local",  # a search-path miss
        f"{ns}.svc.cluster.local.cluster.local",
    )
    for name in missing:
        msg = server.udp(name)
        assert msg.rcode() == dns.rcode.NXDOMAIN, name
        assert msg.authority and msg.authority[0].rdtype == 6  # SOA
    assert server.udp(f"{ns}.svc.cluster.local").rcode() == dns.rcode.NOERROR
    started = time.monotonic()
    assert server.udp("example.com").rcode() == dns.rcode.REFUSED
    assert time.monotonic() - started < 0.5
    assert "status: REFUSED" in server.dig("kubernetes.io")


def test_changes_show_up_within_a_second(
    api: ApiServerProcess, ns: str, server: DnsProcess
) -> None:
    apply(api, ns, service("moving", type="ExternalName", externalName="one.example.com"))
    name = f"moving.{ns}.svc.cluster.local"
    wait_for(lambda: server.short(name) == ["one.example.com."], timeout=5, what="first target")
    api.out(
        "patch", "service", "moving", "-n", ns, "-p", '{"spec":{"externalName":"two.example.com"}}'
    )
    wait_for(lambda: server.short(name) == ["two.example.com."], timeout=1.0, what="new target")
    api.out("delete", "service", "moving", "-n", ns)
    wait_for(lambda: server.udp(name).rcode() == dns.rcode.NXDOMAIN, timeout=1.0, what="NXDOMAIN")
    apply(api, ns, service("hl", clusterIP="None", ports=[{"name": "http", "port": 80}]))
    hl = f"hl.{ns}.svc.cluster.local"
    wait_for(lambda: server.udp(hl).rcode() == dns.rcode.NXDOMAIN, timeout=5, what="empty hl")
    apply(api, ns, endpoint_slice("hl", ["10.244.2.9"]))
    wait_for(lambda: server.short(hl) == ["10.244.2.9"], timeout=1.0, what="an endpoint")


def test_big_headless_answer_falls_back_to_tcp(
    api: ApiServerProcess, ns: str, server: DnsProcess
) -> None:
    ips = [f"10.244.4.{i}" for i in range(1, 151)]
    apply(api, ns, service("big", clusterIP="None"), endpoint_slice("big", ips))
    name = f"big.{ns}.svc.cluster.local"
    wait_for(lambda: server.udp(name, use_edns=0, payload=65000).answer, timeout=5, what="big")
    truncated = server.udp(name)
    assert truncated.flags & 0x0200 and not truncated.answer  # TC
    out = server.dig(name)
    assert "Truncated, retrying in TCP mode" in out
    assert len(re.findall(r"\sIN\s+A\s+10\.244\.4\.", out)) == 150
    tcp = dns.query.tcp(dns.message.make_query(name, "A"), "127.0.0.1", port=server.port, timeout=2)
    assert len(tcp.answer[0]) == 150


def test_garbage_is_survived_and_metrics_count(server: DnsProcess) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        junk_packets = (b"", b"\x00", b"\x12\x34" + b"\xff" * 40, b"\x00" * 600, b"\x01" * 9000)
        for junk in junk_packets:
            s.sendto(junk, ("127.0.0.1", server.port))
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as t:
        t.sendall(b"\x00\x05hello\x00\x02")  # a bad message, then half a length prefix
    assert server.udp("dns-version.cluster.local", "TXT").answer
    status, text = server.http("/metrics")
    assert status == 200
    assert 'coredns_dns_requests_total{server="dns://127.0.0.1:' in text
    assert 'rcode="NOERROR"' in text and "coredns_dns_request_duration_seconds_bucket" in text
    assert server.http("/ready") == (200, "OK")
    assert server.http("/health") == (200, "OK")


def test_names_outside_the_zone_go_to_the_upstream(api: ApiServerProcess, tmp_path: Path) -> None:
    upstream = start_dns(api, tmp_path / "upstream.log", "--cluster-domain", "other.local")
    try:
        front = start_dns(api, tmp_path / "front.log", "--upstream", f"127.0.0.1:{upstream.port}")
        try:
            assert front.short("dns-version.other.local", "TXT") == ['"1.1.0"']
            assert front.short("+tcp", "dns-version.other.local", "TXT") == ['"1.1.0"']
            assert front.udp("nope.other.local").rcode() == dns.rcode.NXDOMAIN
            assert front.udp("nope.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
        finally:
            stop_process(front.proc)
        dead = start_dns(api, tmp_path / "dead.log", "--upstream", f"127.0.0.1:{_free_port()}")
        try:
            started = time.monotonic()
            assert dead.udp("example.com", lifetime=10).rcode() == dns.rcode.SERVFAIL
            assert time.monotonic() - started < 5
        finally:
            stop_process(dead.proc)
    finally:
        stop_process(upstream.proc)


def _udp_owners(port: int) -> set[int]:
    """PIDs of the processes holding a UDP socket bound to 127.0.0.1:port."""
    out = subprocess.run(
        ["ss", "-Hulpn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return {int(pid) for pid in re.findall(r"pid=(\d+)", out)}


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for its new parent to reap it counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_workers_share_the_port_and_end_with_the_server(
    api: ApiServerProcess, ns: str, tmp_path: Path
) -> None:
    apply(api, ns, service("wk", ports=[{"port": 80}]))
    ip = api.out("get", "service", "wk", "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
    log = tmp_path / "workers.log"
    cmd_log = start_dns(api, log, "--workers", "3")
    try:
        wait_for(lambda: log.read_text().count("caches synced") == 3, timeout=30, what="3 workers")
        owners = _udp_owners(cmd_log.port)
        assert len(owners) == 3 and cmd_log.proc.pid in owners, owners
        # each query from a new socket (a new source port): the kernel spreads them
        name = f"wk.{ns}.svc.cluster.local"
        assert all(cmd_log.short(name) == [ip] for _ in range(30))
        tcp = dns.query.tcp(dns.message.make_query(name, "A"), "127.0.0.1", port=cmd_log.port)
        assert tcp.answer[0][0].to_text() == ip
        workers = owners - {cmd_log.proc.pid}
        cmd_log.proc.terminate()  # the server alone, not its process group
        cmd_log.proc.wait(timeout=10)
        wait_for(lambda: not _udp_owners(cmd_log.port), timeout=10, what="workers gone")
        assert all(_gone(pid) for pid in workers)
    finally:
        stop_process(cmd_log.proc)
