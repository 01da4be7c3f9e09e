from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import ApiServerProcess, ControllerManagerProcess


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    server = ApiServerProcess(tmp_path_factory.mktemp("apiserver") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ns(api: ApiServerProcess, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, named after it."""
    name = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name).strip("-")
    api.out("create", "namespace", name)
    yield name
    api.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ApiServerProcess, ControllerManagerProcess]]:
    """An API server with the controller-manager running against it (no nodes, no pods run)."""
    server = ApiServerProcess(tmp_path_factory.mktemp("cp") / "data")
    server.start()
    cm = ControllerManagerProcess(server.kubeconfig)
    try:
        cm.start()
        yield server, cm
    finally:
        cm.stop()
        server.stop()


@pytest.fixture
def cp(control_plane: tuple[ApiServerProcess, ControllerManagerProcess]) -> ApiServerProcess:
    return control_plane[0]


@pytest.fixture
def cp_ns(cp: ApiServerProcess, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace in the control-plane cluster, named after the test."""
    name = "c-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name).strip("-")
    cp.out("create", "namespace", name)
    yield name
    cp.kubectl("delete", "namespace", name, "--wait=false", check=False)
