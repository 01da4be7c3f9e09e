"""The seed's notes, claim by claim, on a live cluster. Each step narrates (Korean, the
notes' language, or English), runs the real commands, and checks its own claim: if the
cluster does not show it, the tour stops there."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from kubesvc.tour.runner import AGNHOST, GRACE, ClaimFailed, Tour

DATABASE = """apiVersion: v1
kind: Service
metadata: {name: database}
spec:
  selector: {app: database}
  ports: [{name: mysql, port: 3306}]
"""

EXTERNAL_DB = """apiVersion: v1
kind: Service
metadata: {name: external-db, namespace: default}
spec:
  type: ExternalName
  externalName: db.example.com
"""

OUTSIDE_SERVICE = """apiVersion: v1
kind: Service
metadata: {name: legacy-api}
spec:
  ports: [{port: 80, targetPort: 8000}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: legacy-api}
subsets:
- addresses: [{ip: HOST_IP}]
  ports: [{port: 8000}]
"""


def _names(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if line.strip().startswith("kubia-")}


def step_1_pods_come_and_go(t: Tour) -> None:
    t.title(
        1,
        "서비스가 필요한 이유: 파드는 일시적이다",
        "Why Services exist: pods come and go",
        "서비스가 필요한 이유?",
    )
    t.say(
        "kubia 파드 3개와, 서비스보다 먼저 뜨는 클라이언트 파드 early를 만든다.",
        "Three kubia pods, and a client pod, early, started before any Service exists.",
    )
    t.kubectl("create", "deployment", "kubia", "--image=luksa/kubia", "--replicas=3")
    t.kubectl("run", "early", "--image=busybox", "--command", "--", "sleep", "36000")
    pods = t.ready_pods("app=kubia", 3)
    t.ready_pods("run=early", 1)
    t.kubectl("get", "pods", "-o", "wide")
    old = pods[0]
    t.say(
        "파드 하나를 지운다. ReplicaSet이 새 파드를 띄우지만 IP는 바뀐다.",
        "Delete one: its ReplicaSet starts another, with another IP.",
    )
    t.kubectl("delete", "pod", old["metadata"]["name"])
    fresh = t.ready_pods("app=kubia", 3)
    t.kubectl("get", "pods", "-l", "app=kubia", "-o", "wide")
    ips = {p["status"]["podIP"] for p in fresh}
    t.check(
        old["status"]["podIP"] not in ips
        and old["metadata"]["name"] not in {p["metadata"]["name"] for p in fresh},
        f"{old['metadata']['name']}({old['status']['podIP']})는 사라지고 "
        "새 파드가 다른 이름·IP로 떴다",
        f"{old['metadata']['name']} ({old['status']['podIP']}) is gone; its replacement has "
        "another name and address",
    )

    t.say(
        "그래서 서비스: 파드가 바뀌어도 그대로인 하나의 IP로, 여러 파드에 나눠 보낸다.",
        "Hence a Service: one address that stays, spread over however many pods there are.",
    )
    t.kubectl("expose", "deployment", "kubia", "--port=80", "--target-port=8080")
    ip = t.kubectl_json("get", "svc", "kubia")["spec"]["clusterIP"]
    t.facts["cluster_ip"] = ip
    script = f"for i in 1 2 3 4 5 6 7 8; do curl -s -m 3 http://{ip}; done"
    out = t.until(lambda: t.pod_exec("early", "sh", "-c", script, show=False).stdout, 10)
    t.out(f"$ kubectl exec early -- sh -c '{script}'\n{out.rstrip()}")
    answered = {m for m in re.findall(r"kubia-[a-z0-9-]+", out)}
    t.check(
        len(answered) >= 2,
        f"하나의 ClusterIP {ip}에 {len(answered)}개의 서로 다른 파드가 답했다",
        f"one ClusterIP, {ip}, was answered by {len(answered)} different pods",
        out,
    )
    t.wait_key()


def step_2_environment(t: Tour) -> None:
    t.title(
        2,
        "환경 변수로 서비스 찾기 (파드 시작 시점에 고정)",
        "Discovery through environment variables, fixed when the pod starts",
        "클라이언트 파드가 서비스의 IP 주소를 알 수 있는 방법? 1. 환경 변수",
    )
    t.kubectl("apply", "-f", "-", stdin=DATABASE)
    t.kubectl("run", "client", "--image=busybox", "--command", "--", "sleep", "36000")
    t.ready_pods("run=client", 1)
    late = t.pod_exec("client", "env", show=False).stdout
    early = t.pod_exec("early", "env", show=False).stdout
    t.out("$ kubectl exec client -- env | grep -E 'DATABASE|KUBIA'")
    t.out(
        "".join(
            f"{line}\n"
            for line in sorted(late.splitlines())
            if "_SERVICE_" in line and ("DATABASE" in line or "KUBIA" in line)
        ).rstrip()
    )
    t.out("$ kubectl exec early -- env | grep -E 'DATABASE|KUBIA'")
    t.out("(nothing)" if "KUBIA_SERVICE_HOST" not in early else early)
    db_ip = t.kubectl_json("get", "svc", "database")["spec"]["clusterIP"]
    t.check(
        f"DATABASE_SERVICE_HOST={db_ip}" in late and "DATABASE_SERVICE_PORT=3306" in late,
        f"나중에 뜬 client에는 DATABASE_SERVICE_HOST={db_ip}, DATABASE_SERVICE_PORT=3306이 있다",
        f"client, started after the Services, has DATABASE_SERVICE_HOST={db_ip} and "
        "DATABASE_SERVICE_PORT=3306",
    )
    t.check(
        "KUBIA_SERVICE_HOST" not in early and "DATABASE_SERVICE_HOST" not in early,
        "서비스보다 먼저 뜬 early에는 그 변수가 없다: 환경 변수는 파드 생성 시점에만 주입된다",
        "early, started before them, has none: the variables are set when a pod starts",
    )
    t.wait_key()


def step_3_dns(t: Tour) -> None:
    t.title(
        3,
        "DNS로 서비스 찾기: kube-system의 kube-dns",
        "Discovery through DNS: kube-dns in kube-system",
        "2. DNS를 통한 서비스 검색",
    )
    t.ready_pods("k8s-app=kube-dns", 2, namespace="kube-system")
    t.kubectl("get", "svc,pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")
    dns = t.kubectl_json("get", "svc", "kube-dns", "-n", "kube-system")["spec"]["clusterIP"]
    resolv = t.pod_exec("client", "cat", "/etc/resolv.conf").stdout
    t.check(
        f"nameserver {dns}" in resolv and "default.svc.cluster.local" in resolv,
        f"파드의 resolv.conf는 kube-dns({dns})와 검색 도메인을 가리킨다",
        f"the pod's resolv.conf names kube-dns ({dns}) and the search domains",
    )
    ip = t.facts["cluster_ip"]
    fqdn = t.pod_exec("client", "nslookup", "kubia.default.svc.cluster.local").stdout
    t.check(
        ip in fqdn,
        f"FQDN kubia.default.svc.cluster.local은 {ip}이다",
        f"the FQDN kubia.default.svc.cluster.local is {ip}",
    )
    short = t.pod_exec("client", "curl", "-s", "-m", "3", "http://kubia").stdout
    t.check(
        short.startswith("You've hit kubia-"),
        "짧은 이름 kubia도 검색 도메인 덕분에 통한다",
        "the short name kubia works too, through the search list",
        short,
    )
    t.wait_key()


def step_4_ping(t: Tour) -> None:
    t.title(
        4,
        "서비스 IP에는 ping이 안 되고 curl은 된다",
        "Ping fails, curl works",
        "덧) 서비스 IP에 ping을 할 수 없는 이유",
    )
    ip = t.facts["cluster_ip"]
    ping = t.pod_exec("client", "ping", "-c", "1", "-W", "2", ip)
    t.check(
        ping.returncode != 0 and "100% packet loss" in ping.stdout,
        "ping(ICMP)은 응답이 없다: ClusterIP는 어떤 인터페이스에도 없는 가상 IP다",
        "ping (ICMP) gets no answer: a ClusterIP is on no interface",
    )
    t.say(
        "같은 주소로 TCP는 된다. kubesvc trace가 그 한 번의 요청이 실제로 지난 길을 보여 준다.",
        "TCP to the same address works; kubesvc trace shows the path one request really took.",
    )
    res = t.kubesvc("trace", "--name", t.cluster, "--from", "client", f"{ip}:80")
    doc = json.loads(
        t.kubesvc(
            "trace", "--name", t.cluster, "--from", "client", f"{ip}:80", "-o", "json", show=False
        ).stdout
        or "{}"
    )
    t.check(
        res.returncode == 0 and doc.get("ok") is True,
        "TCP 연결은 kube-proxy의 DNAT 규칙을 지나 파드에 닿았다",
        "the TCP connection went through kube-proxy's DNAT to a pod",
    )
    t.say(
        "ICMP를 다루는 규칙은 없다: 규칙은 주소·프로토콜·포트(TCP/UDP/SCTP)로만 맞춘다.",
        "No rule takes ICMP: the rules match address, protocol and port (TCP, UDP, SCTP).",
    )
    t.wait_key()


def step_5_stored(t: Tour) -> None:
    t.title(
        5,
        "서비스 오브젝트는 API 서버 뒤의 저장소에 있다",
        "Services are stored behind the API server",
        "서비스 오브젝트는 어디에 존재하는 거고 ...",
    )
    t.kubectl("get", "svc")
    t.say(
        "API 서버는 서비스를 etcd에 저장한다. 키는 kube-apiserver와 같은 자리다: "
        "/registry/services/specs/<네임스페이스>/<이름>.",
        "The API server stores Services in etcd, at kube-apiserver's keys: "
        "/registry/services/specs/<namespace>/<name>.",
    )
    t.kubesvc(
        "etcdctl", "--name", t.cluster, "--", "get", "--prefix", "--keys-only",
        "/registry/services/specs/default/",
    )  # fmt: skip
    key = "/registry/services/specs/default/kubia"
    res = t.kubesvc("etcdctl", "--name", t.cluster, "--", "get", key, "-w", "json", show=False)
    t.out(f"$ kubesvc etcdctl --name {t.cluster} -- get {key} -w json")
    try:
        kvs = json.loads(res.stdout or "{}").get("kvs") or []
    except ValueError:
        kvs = []
    if not kvs:
        raise ClaimFailed(f"etcdctl did not find {key}: {res.stderr.strip()}")
    stored = json.loads(base64.b64decode(kvs[0]["value"]))
    mod_revision = kvs[0]["mod_revision"]
    t.out(f"mod_revision {mod_revision}, spec.clusterIP {stored['spec']['clusterIP']}")
    rv = t.kubectl_json("get", "svc", "kubia")["metadata"]["resourceVersion"]
    t.check(
        stored["spec"]["clusterIP"] == t.facts["cluster_ip"] and str(mod_revision) == rv,
        f"etcd의 {key}가 kubectl get svc가 보여 준 바로 그 객체다 "
        f"(resourceVersion {rv} = etcd의 mod_revision)",
        f"{key} in etcd is the object kubectl showed (resourceVersion {rv} is etcd's mod_revision)",
    )
    t.wait_key()


def step_6_proxy(t: Tour) -> None:
    t.title(
        6,
        "kube-proxy는 서비스를 watch하고 각 노드에 DNAT 규칙을 쓴다",
        "kube-proxy watches Services and writes DNAT rules on every node",
        "서비스 오브젝트와 kube-proxy의 상호작용",
    )
    nodes = [n["metadata"]["name"] for n in t.kubectl_json("get", "nodes")["items"]]
    res = t.kubesvc(
        "proxy", "rules", "--name", t.cluster, "--node", nodes[0], "--service", "default/kubia"
    )
    pods = t.ready_pods("app=kubia", 3)
    t.check(
        all(p["status"]["podIP"] in res.stdout for p in pods),
        f"{nodes[0]}의 규칙이 세 파드의 IP로 DNAT한다",
        f"{nodes[0]}'s rules DNAT to the three pods' addresses",
    )
    t.say(
        "파드를 4개로 늘리면 모든 노드의 규칙이 곧바로 따라온다.",
        "Scale to four pods: every node's rules follow at once.",
    )
    t.kubectl("scale", "deployment", "kubia", "--replicas=4")
    pods = t.ready_pods("app=kubia", 4)

    def all_nodes_have_them() -> bool:
        for node in nodes:
            out = t.kubesvc(
                "proxy",
                "rules",
                "--name",
                t.cluster,
                "--node",
                node,
                "--service",
                "default/kubia",
                show=False,
            ).stdout
            if not all(p["status"]["podIP"] in out for p in pods):
                return False
        return True

    t.check(
        bool(t.until(all_nodes_have_them, 10)),
        f"{', '.join(nodes)} 모두 네 번째 파드로도 DNAT한다",
        f"{', '.join(nodes)} all DNAT to the fourth pod too",
    )
    t.kubectl("scale", "deployment", "kubia", "--replicas=3")
    t.wait_key()


def step_7_outside_endpoints(t: Tour) -> None:
    t.title(
        7,
        "셀렉터 없는 서비스와 수동 Endpoints: 클러스터 밖의 서버",
        "A Service without a selector, its Endpoints written by hand: a server outside",
        "클러스터 외부에 있는 서비스 연결하는 방법 1.",
    )
    t.kubectl("get", "endpoints", "kubia")
    t.say(
        "셀렉터가 있으면 Endpoints는 자동으로 생긴다. "
        "이제 클러스터 밖 호스트 legacy에 서버를 띄운다.",
        "With a selector the Endpoints are made for you. Now a server on legacy, a host "
        "outside the cluster:",
    )
    t.kubesvc("host", "add", "legacy", "--name", t.cluster)
    ip = _host_ip(t, "legacy")
    web_root = Path(t.facts["cluster_dir"]) / "tour" / "legacy-www"
    web_root.mkdir(parents=True, exist_ok=True)
    (web_root / "index.html").write_text("hello from legacy, outside the cluster\n")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubesvc.cli.main",
            "host",
            "exec",
            "legacy",
            "--name",
            t.cluster,
            "--",
            sys.executable,
            "-m",
            "http.server",
            "8000",
            "--directory",
            str(web_root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    t.facts["legacy_server"] = server.pid
    t.kubectl("apply", "-f", "-", stdin=OUTSIDE_SERVICE.replace("HOST_IP", ip))
    t.kubectl("get", "svc,endpoints", "legacy-api")
    out = t.until(
        lambda: (
            t.pod_exec("client", "curl", "-s", "-m", "2", "http://legacy-api", show=False).stdout
        ),
        15,
    )
    t.out(f"$ kubectl exec client -- curl -s http://legacy-api\n{out.rstrip()}")
    t.check(
        "hello from legacy" in out,
        f"legacy-api라는 이름으로 클러스터 밖 {ip}:8000의 서버에 닿았다",
        f"the name legacy-api reached the server outside, at {ip}:8000",
        out,
    )
    t.wait_key()


def step_8_external_name(t: Tour) -> None:
    t.title(
        8,
        "ExternalName: 외부 서비스의 별칭 (CNAME)",
        "ExternalName: an alias, a CNAME",
        "클러스터 외부에 있는 서비스 연결하는 방법 2.",
    )
    t.kubectl("apply", "-f", "-", stdin=EXTERNAL_DB)
    t.kubectl("get", "svc", "external-db")
    res = t.kubesvc(
        "trace", "--name", t.cluster, "--from", "client", "external-db", "-o", "json", show=False
    )
    doc = json.loads(res.stdout or "{}")
    queries = next(
        (s.get("queries", []) for s in doc.get("steps", []) if s["title"].startswith("DNS")), []
    )
    answers = [a for q in queries for a in q.get("answers", [])]
    for q in queries:
        t.out(f"  {q['name']} A? -> {q['rcode']} {'; '.join(q['answers'])}")
    t.check(
        any("CNAME db.example.com." in a for a in answers),
        "external-db.default.svc.cluster.local은 CNAME db.example.com으로 답한다",
        "external-db.default.svc.cluster.local answers with the CNAME db.example.com",
    )
    t.say(
        "db.example.com 자체는 클러스터 밖의 이름이고, "
        "이 클러스터는 밖으로 나가지 않으니 거기서 멈춘다.",
        "db.example.com itself is outside; this cluster sends nothing outside, "
        "so the name ends there.",
    )
    t.wait_key()


def _host_ip(t: Tour, host: str) -> str:
    out = t.kubesvc("host", "list", "--name", t.cluster, show=False).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == host:
            return next(f for f in fields if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", f))
    raise ClaimFailed(f"host {host} has no address")


def _node_ips(t: Tour) -> dict[str, str]:
    return {
        n["metadata"]["name"]: next(
            a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"
        )
        for n in t.kubectl_json("get", "nodes")["items"]
    }


def step_9_node_port(t: Tour) -> None:
    t.title(
        9,
        "NodePort: 모든 노드의 같은 포트, 그리고 그 노드가 죽으면",
        "NodePort on every node, then the node a client used fails",
        "외부 클러스터에 서비스 노출하는 방법 1. Node Port 서비스",
    )
    t.kubesvc("host", "add", "laptop", "--name", t.cluster)
    t.kubectl(
        "expose",
        "deployment",
        "kubia",
        "--name=kubia-np",
        "--type=NodePort",
        "--port=80",
        "--target-port=8080",
    )
    port = t.kubectl_json("get", "svc", "kubia-np")["spec"]["ports"][0]["nodePort"]
    ips = _node_ips(t)
    for node, ip in ips.items():
        out = t.until(
            lambda ip=ip: (
                t.on_host(
                    "laptop", "curl", "-s", "-m", "3", f"http://{ip}:{port}", show=False
                ).stdout
            ),
            10,
        )
        t.out(f"laptop$ curl http://{ip}:{port}\n{out.rstrip()}")
        t.check(
            out.startswith("You've hit kubia-"),
            f"{node}({ip}):{port}가 답한다",
            f"{node} ({ip}):{port} answers",
        )
    failing = sorted(ips)[-1]
    t.facts["failed_node"] = failing
    t.say(
        f"노트의 경고: {failing}이 죽으면 그 노드 주소만 아는 클라이언트는 서비스를 잃는다.",
        f"The notes' warning: when {failing} fails, a client that knows only its address "
        "loses the Service.",
    )
    t.kubesvc("node", "stop", failing, "--name", t.cluster)
    res = t.on_host("laptop", "curl", "-s", "-m", "2", f"http://{ips[failing]}:{port}")
    t.check(
        res.returncode != 0,
        f"{failing}의 NodePort는 더 이상 답하지 않는다",
        f"{failing}'s NodePort no longer answers",
    )
    alive = next(ip for n, ip in ips.items() if n != failing)
    t.say(
        f"다른 노드의 NodePort는 살아 있다. 다만 제어부가 {failing}을 NotReady로 표시하기 전"
        f"({GRACE}초, 업스트림은 50초)까지는 그 노드의 파드로 가는 연결이 시간 초과된다.",
        f"The other node's NodePort lives on, but until the control plane marks {failing} "
        f"NotReady ({GRACE} s here, 50 s upstream) connections sent to its pods time out.",
    )

    def node_not_ready() -> bool:
        node = t.kubectl_json("get", "node", failing)
        conds = node.get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") != "True" for c in conds)

    t.until(node_not_ready, GRACE + 30, every=0.5)
    t.kubectl("get", "nodes")

    def every_try_answers() -> bool:
        tries = [
            t.on_host("laptop", "curl", "-s", "-m", "2", f"http://{alive}:{port}", show=False)
            for _ in range(4)
        ]
        return all(r.stdout.startswith("You've hit kubia-") for r in tries)

    t.check(
        bool(t.until(every_try_answers, 20, every=0.5)),
        f"{failing}이 NotReady가 되자 그 파드들은 엔드포인트에서 빠지고, "
        f"{alive}:{port}의 모든 연결이 답한다",
        f"once {failing} is NotReady its pods leave the endpoints, and every connection to "
        f"{alive}:{port} is answered",
    )
    t.on_host("laptop", "curl", "-s", "-m", "3", f"http://{alive}:{port}")
    t.facts["node_port"] = port
    t.wait_key()


def step_10_load_balancer(t: Tour) -> None:
    t.title(
        10,
        "LoadBalancer: 노드들 앞의 IP 하나, 그리고 keep-alive",
        "LoadBalancer: one IP in front of the nodes, and keep-alive",
        "2. 로드밸런서 서비스",
    )
    failing = t.facts.get("failed_node")
    if failing:
        t.kubesvc("node", "start", failing, "--name", t.cluster)
        t.until(
            lambda: all(
                c.get("status") == "True"
                for n in t.kubectl_json("get", "nodes")["items"]
                for c in n["status"]["conditions"]
                if c["type"] == "Ready"
            ),
            GRACE + 30,
        )
        t.ready_pods("app=kubia", 3)
    t.kubesvc("host", "add", "laptop", "--name", t.cluster, show=False)
    t.kubectl(
        "expose",
        "deployment",
        "kubia",
        "--name=kubia-lb",
        "--type=LoadBalancer",
        "--port=80",
        "--target-port=8080",
    )

    def lb_ip() -> str:
        ing = t.kubectl_json("get", "svc", "kubia-lb").get("status", {}).get("loadBalancer", {})
        return ((ing.get("ingress") or [{}])[0]).get("ip", "")

    ip = t.until(lb_ip, 30)
    t.kubectl("get", "svc", "kubia-lb")
    t.check(bool(ip), f"LoadBalancer IP {ip}가 할당되었다", f"the LoadBalancer IP {ip} is assigned")
    url = f"http://{ip}"
    t.until(
        lambda: t.on_host("laptop", "curl", "-s", "-m", "1", url, show=False).returncode == 0, 20
    )
    names = set()
    for _ in range(8):
        names |= _names(
            t.on_host("laptop", "curl", "-s", "-m", "3", url, show=False).stdout.replace(
                "You've hit ", ""
            )
        )
    t.out(f"laptop$ curl {url}  (x8, one connection each)\n  " + ", ".join(sorted(names)))
    t.check(
        len(names) >= 2,
        "연결마다 다른 파드가 답할 수 있다",
        "each new connection may reach another pod",
    )
    t.say(
        "keep-alive: 연결 하나로 보낸 요청 여섯 개는 모두 같은 파드로 간다 "
        "(세션 어피니티 None이라도).",
        "Keep-alive: six requests over one connection all reach the same pod "
        "(sessionAffinity is None).",
    )
    res = t.on_host("laptop", "curl", "-s", "-m", "5", *[url] * 6)
    kept = re.findall(r"kubia-[a-z0-9-]+", res.stdout)
    t.check(
        len(kept) == 6 and len(set(kept)) == 1,
        "한 연결의 요청은 한 파드에 머문다",
        "the requests of one connection stay with one pod",
        res.stdout,
    )
    t.wait_key()


def _tls_pair(host: str) -> tuple[str, str]:
    """A self-signed certificate and key for `host` (PEM)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from kubesvc import pki

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert, key = pki.self_signed(name, [x509.DNSName(host)], days=30)
    return pki.cert_pem(cert).decode(), pki.key_pem(key).decode()


def step_11_ingress(t: Tour) -> None:
    t.title(
        11,
        "인그레스: 주소 하나로 여러 서비스, 호스트와 경로로, TLS까지",
        "Ingress: one address for many Services, by host and path, with TLS",
        "3. 인그레스",
    )
    t.ready_pods("app.kubernetes.io/name=ingress-kubesvc", 1, namespace="ingress-kubesvc")
    t.kubectl(
        "create",
        "deployment",
        "echo",
        f"--image={AGNHOST}",
        "--",
        "/agnhost",
        "netexec",
        "--http-port=8080",
    )
    t.kubectl("create", "service", "clusterip", "echo", "--clusterip=None", "--tcp=80:8080")
    cert, key = _tls_pair("kubia.example.com")
    tmp = Path(t.facts["cluster_dir"]) / "tour"
    tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
    (tmp / "tls.crt").write_text(cert)
    (tmp / "tls.key").write_text(key)
    (tmp / "tls.key").chmod(0o600)
    t.kubectl(
        "create",
        "secret",
        "tls",
        "kubia-tls",
        f"--cert={tmp / 'tls.crt'}",
        f"--key={tmp / 'tls.key'}",
    )
    t.kubectl(
        "create",
        "ingress",
        "kubia",
        "--rule=kubia.example.com/*=kubia:80,tls=kubia-tls",
        "--rule=kubia.example.com/echo*=echo:80",
        "--rule=echo.example.com/*=echo:80",
    )
    t.ready_pods("app=echo", 1)

    def address() -> str:
        lb = t.kubectl_json("get", "ingress", "kubia").get("status", {}).get("loadBalancer", {})
        return ((lb.get("ingress") or [{}])[0]).get("ip", "")

    addr = t.until(address, 30)
    t.kubectl("get", "ingress", "kubia")
    t.check(bool(addr), f"인그레스 주소는 {addr}", f"the Ingress's address is {addr}")

    def browse(host: str, path: str, scheme: str = "http", show: bool = True) -> str:
        port = 443 if scheme == "https" else 80
        return t.on_host(
            "laptop",
            "curl",
            "-s",
            "-m",
            "3",
            "--cacert",
            str(tmp / "tls.crt"),
            "--resolve",
            f"{host}:{port}:{addr}",
            f"{scheme}://{host}{path}",
            show=show,
        ).stdout

    t.until(lambda: browse("echo.example.com", "/hostname", show=False).startswith("echo-"), 30)
    by_host = browse("echo.example.com", "/hostname")
    by_path = browse("kubia.example.com", "/echo?msg=routed-by-path", scheme="https")
    default = browse("kubia.example.com", "/", scheme="https")
    t.check(
        by_host.startswith("echo-")
        and "routed-by-path" in by_path
        and default.startswith("You've hit kubia-"),
        "Host 헤더와 경로가 서비스를 고른다: 같은 주소에서 echo와 kubia",
        "the Host header and the path choose the Service: echo and kubia at one address",
    )
    tls = browse("kubia.example.com", "/", scheme="https")
    t.check(
        tls.startswith("You've hit kubia-"),
        "TLS: https://kubia.example.com이 kubia-tls 인증서로 답한다 (curl이 그 인증서로 검증)",
        "TLS: https://kubia.example.com answers with the kubia-tls certificate (curl verified it)",
        tls,
    )
    code = t.on_host(
        "laptop",
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}\\n",
        "--resolve",
        f"kubia.example.com:80:{addr}",
        "http://kubia.example.com/",
    ).stdout
    t.check(
        code.startswith("308 https://kubia.example.com/"),
        "TLS가 있는 호스트로 온 평문 HTTP는 https로 308 리다이렉트된다",
        "plain HTTP to the TLS host is redirected to https (308)",
        code,
    )
    client_ip = browse("echo.example.com", "/clientip")
    controller = t.kubectl_json("get", "pods", "-n", "ingress-kubesvc")["items"]
    controller_ips = {p["status"].get("podIP") for p in controller}
    t.check(
        client_ip.split(":")[0] in controller_ips,
        "컨트롤러는 서비스가 아니라 파드로 직접 보낸다: echo 파드가 본 출발지는 컨트롤러 파드다",
        "the controller sends to the pod itself, not the Service: echo's pod sees the "
        "controller pod's address",
        client_ip,
    )
    t.wait_key()


STEPS: list[Callable[[Tour], None]] = [
    step_1_pods_come_and_go,
    step_2_environment,
    step_3_dns,
    step_4_ping,
    step_5_stored,
    step_6_proxy,
    step_7_outside_endpoints,
    step_8_external_name,
    step_9_node_port,
    step_10_load_balancer,
    step_11_ingress,
]
