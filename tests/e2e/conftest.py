from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import ApiServerProcess


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
