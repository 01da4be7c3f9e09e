"""Reading a kubeconfig for a client: only its CA is trusted, and a component can wait for
the server it names before the file or the server exist."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesvc.apiserver.certs import ensure_credentials
from kubesvc.client import kubeconfig


def write_config(path: Path, server: str, ca: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": "u", "user": {"token": "tok"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))


def test_only_the_kubeconfig_ca_is_trusted(tmp_path: Path) -> None:
    creds = ensure_credentials(tmp_path / "pki-dir", ["127.0.0.1"])
    write_config(tmp_path / "config", "https://127.0.0.1:6443/", creds.ca_cert)
    access = kubeconfig.load(tmp_path / "config")
    assert access.server == "https://127.0.0.1:6443"
    assert access.token == "tok"
    ctx = access.ssl_context
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    # the cluster's CA and nothing from the system's bundle
    only_ca = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    only_ca.load_verify_locations(cafile=creds.ca_cert)
    assert ctx.get_ca_certs() == only_ca.get_ca_certs()
    assert len(ctx.get_ca_certs()) == 1


def test_server_address() -> None:
    assert kubeconfig.server_address("https://10.0.0.1:6443") == ("10.0.0.1", 6443)
    assert kubeconfig.server_address("https://example") == ("example", 443)
    assert kubeconfig.server_address("http://[::1]:8080/x") == ("::1", 8080)
    for bad in ("", "no-scheme", "https://:6443", "https://h:99999"):
        with pytest.raises(ValueError):
            kubeconfig.server_address(bad)


def test_wait_for_server_waits_for_the_file_then_the_listener(tmp_path: Path) -> None:
    creds = ensure_credentials(tmp_path / "pki-dir", ["127.0.0.1"])
    path = tmp_path / "config"

    async def main() -> None:
        # a free port, closed again: nothing listens there until the "server" starts
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        waiter = asyncio.create_task(kubeconfig.wait_for_server(path, poll=0.005))
        await asyncio.sleep(0.05)
        assert not waiter.done()  # no kubeconfig yet
        write_config(path, f"https://127.0.0.1:{port}", creds.ca_cert)
        await asyncio.sleep(0.05)
        assert not waiter.done()  # nothing listens yet
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
        try:
            await asyncio.wait_for(waiter, 5)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


@pytest.mark.parametrize(
    "text",
    [
        "- a list\n",
        "just a string\n",
        "current-context: x\ncontexts: {x: 1}\n",
        "current-context: x\ncontexts: [{name: x, context: 5}]\n",
        "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "clusters: [{name: c, cluster: {server: 'https://h:notaport'}}]\n",
        "contexts: []\n",
    ],
)
def test_wait_for_server_refuses_a_kubeconfig_it_cannot_read(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(ValueError):
        asyncio.run(asyncio.wait_for(kubeconfig.wait_for_server(path, poll=0.005), 5))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
NAMED = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["x", "c", "u", 1])},
        optional={
            "context": JSON | st.fixed_dictionaries({"cluster": JSON, "user": JSON}),
            "cluster": JSON | st.fixed_dictionaries({"server": JSON}),
            "user": JSON,
        },
    )
    | JSON,
    max_size=3,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    config=st.fixed_dictionaries(
        {},
        optional={
            "current-context": JSON | st.just("x"),
            "contexts": NAMED,
            "clusters": NAMED,
            "users": NAMED,
        },
    )
    | JSON
)
def test_any_kubeconfig_shape_is_read_or_refused_with_value_error(
    tmp_path: Path, config: object
) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    try:
        cluster, user = kubeconfig._sections(path, None)
    except ValueError:
        return
    assert isinstance(cluster, dict) and isinstance(user, dict)
    try:
        host, port = kubeconfig.server_address(str(cluster.get("server") or ""))
    except ValueError:
        return
    assert host and 0 <= port < 65536


def test_every_api_server_from_the_servers_extension() -> None:
    from kubesvc.client.kubeconfig import SERVERS_EXTENSION, cluster_servers

    cluster = {
        "server": "https://172.31.0.1:6443/",
        "extensions": [
            {"name": "other", "extension": {"servers": ["https://10.0.0.9:1"]}},
            {
                "name": SERVERS_EXTENSION,
                "extension": {
                    "servers": [
                        "https://172.31.0.1:6443",
                        "https://172.31.0.2:6443",
                        "http://plain:80",  # not TLS: left out
                        7,
                    ]
                },
            },
        ],
    }
    assert cluster_servers(cluster) == ("https://172.31.0.1:6443", "https://172.31.0.2:6443")
    assert cluster_servers({"server": "https://a:1"}) == ("https://a:1",)
    assert cluster_servers({"server": "https://a:1", "extensions": "junk"}) == ("https://a:1",)
    odd = {"server": "https://a:1", "extensions": [{"name": SERVERS_EXTENSION, "extension": [1]}]}
    assert cluster_servers(odd) == ("https://a:1",)
