"""`kubesvc web` in a real browser (Debian's headless Chromium through Selenium): the page
shows the cluster, follows a scale within moments, draws a connection after a request,
and runs a trace. A screenshot is kept in test-artifacts/ (or $KUBESVC_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.e2e.cluster import Cluster, deploy_netexec, running_cluster

ARTIFACTS = Path(
    os.environ.get("KUBESVC_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)


def _serve(c: Cluster, listen: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubesvc.cli.main", "web", "--name", c.name, "--listen", listen],
        env=c.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("kubesvc web: http://"), line + (
        proc.stderr.read() if proc.stderr else ""
    )
    return proc, line.split(": ", 1)[1].strip()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("web"), "web") as c:
        deploy_netexec(c, "web", 1)
        yield c


@pytest.fixture(scope="module")
def page(cluster: Cluster) -> Iterator[webdriver.Chrome]:
    proc, url = _serve(cluster, "127.0.0.1:0")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                "--disable-dev-shm-usage", "--no-proxy-server"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(url)
        yield driver
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(10)


def _until(fn: Callable[[], Any], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _pods(driver: webdriver.Chrome) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#pods li')].map(e => e.dataset.ref)"
    )


def test_the_page_shows_the_cluster_and_follows_a_scale(
    cluster: Cluster, page: webdriver.Chrome
) -> None:
    assert _until(lambda: page.find_element(By.ID, "status").get_attribute("data-state") == "live")
    web = [p["metadata"]["name"] for p in cluster.pods("app=web")]
    assert _until(lambda: {f"default/{n}" for n in web} <= set(_pods(page)))
    services = page.execute_script(
        "return [...document.querySelectorAll('#services li')].map(e => e.dataset.ref)"
    )
    assert "default/web" in services and "kube-system/kube-dns" in services
    # the graph itself holds the same: a pod inside its node, the Service's endpoint edge
    ids = page.execute_script("return cy.elements().map(e => e.id())")
    assert "svc:default/web" in ids and f"ep:svc:default/web>pod:default/{web[0]}" in ids
    cluster.out("scale", "deployment", "web", "--replicas=2")
    assert _until(lambda: sum(r.startswith("default/web-") for r in _pods(page)) == 2), _pods(page)
    cluster.running("app=web", 2)
    new = {f"default/{p['metadata']['name']}" for p in cluster.pods("app=web")}
    assert _until(lambda: new <= set(_pods(page)))


def test_a_connection_is_drawn_after_a_request(cluster: Cluster, page: webdriver.Chrome) -> None:
    body = cluster.exec("client", "curl", "-s", "http://web/hostname").stdout.strip()

    def drawn() -> list[dict[str, str]]:
        items = page.execute_script(
            "return [...document.querySelectorAll('#connections li')]"
            ".map(e => Object.assign({}, e.dataset))"
        )
        return [i for i in items if i["service"] == "svc:default/web"]

    got = _until(drawn)
    assert got, page.find_element(By.ID, "connections").text
    assert got[0]["client"] == "pod:default/client"
    assert got[0]["endpoint"] == f"pod:default/{body}"
    edges = page.execute_script("return cy.edges('.conn').map(e => e.target().id())")
    assert "svc:default/web" in edges or f"pod:default/{body}" in edges
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "web-view.png"
    page.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_a_trace_from_the_page(cluster: Cluster, page: webdriver.Chrome) -> None:
    Select(page.find_element(By.ID, "trace-from")).select_by_value("default/client")
    page.find_element(By.ID, "trace-target").send_keys("web/hostname")
    page.find_element(By.CSS_SELECTOR, "#trace-form button").click()
    out = page.find_element(By.ID, "trace-output")
    assert _until(lambda: out.get_attribute("data-state") in ("ok", "failed", "error"), 30)
    assert out.get_attribute("data-state") == "ok", out.text
    answered = out.get_attribute("data-answered-by")
    assert answered.startswith("default/web-")
    assert f"OK: answered by {answered}" in out.text and "Endpoint chosen (conntrack)" in out.text


def test_off_loopback_the_token_is_required(cluster: Cluster) -> None:
    host_ip = cluster.json("get", "nodes")["items"][0]["status"]["addresses"][0]["address"]
    bridge = host_ip.rsplit(".", 1)[0] + ".1"  # the host's address on the nodes' network
    proc, url = _serve(cluster, f"{bridge}:0")
    try:
        assert "?token=" in url
        bare = url.split("?", 1)[0]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bare + "api/graph", timeout=5)
        assert refused.value.code == 401
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200 and b"cytoscape" in resp.read()
        query = "?" + url.split("?", 1)[1]
        with urllib.request.urlopen(bare + "api/graph" + query, timeout=5) as resp:
            assert resp.status == 200
        # hostile trace requests get a 4xx and change nothing
        for body, code in ((b"not json", 400), (b'{"from": 1}', 400), (b"x" * 10_000, 413)):
            req = urllib.request.Request(bare + "api/trace" + query, data=body, method="POST")
            with pytest.raises(urllib.error.HTTPError) as bad:
                urllib.request.urlopen(req, timeout=5)
            assert bad.value.code == code, body[:20]
    finally:
        proc.terminate()
        proc.wait(10)


def test_kill_9_leaves_no_conntrack_watcher_behind(cluster: Cluster) -> None:
    """Its conntrack watchers run in the nodes' namespaces: a killed view takes them along."""
    proc, _url = _serve(cluster, "127.0.0.1:0")
    children: list[int] = []
    try:
        nodes = len(cluster.json("get", "nodes")["items"])
        task = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        children = _until(lambda: [int(p) for p in task.read_text().split()][:nodes] if
                          len(task.read_text().split()) >= nodes else [])  # fmt: skip
        assert len(children) == nodes
        assert all(Path(f"/proc/{c}/comm").read_text().strip() == "conntrack" for c in children)
    finally:
        proc.kill()
        proc.wait(10)
    assert _until(lambda: not any(Path(f"/proc/{c}").exists() for c in children), 10), children
