"""An API server running in this process (on its own event loop thread), so that tests can
write raw bytes straight into its store, bypassing the API: watchers see them as they would
see old data or a write by another tool."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from kubesvc.api.kinds import BY_KIND, Kind
from kubesvc.apiserver.registry import key_for
from kubesvc.apiserver.server import ApiServer, ServerConfig
from kubesvc.client.rest import ApiClient
from tests.e2e.harness import KUBECTL

T = TypeVar("T")


class InProcessApiServer:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server = ApiServer(ServerConfig(data_dir=data_dir, port=0))
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._client: ApiClient | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self.run(self.server.start(), timeout=30)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._client is not None:
            self.run(self._client.close())

        async def stop() -> None:
            # watch handlers of clients that went away hold a graceful stop for a minute
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.server.stop(), 3)
            if self.server.store is not None:
                with contextlib.suppress(Exception):
                    await self.server.store.close()

        self.run(stop(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Start a coroutine on the server's loop (a component that runs until cancelled)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def client(self) -> ApiClient:
        """A REST client bound to the server's loop (use it inside `run`)."""
        if self._client is None:
            self._client = ApiClient.from_kubeconfig(str(self.kubeconfig))
        return self._client

    # -- raw writes into the store -----------------------------------------------------------
    def put_raw(self, kind: str | Kind, namespace: str | None, name: str, raw: bytes | str) -> None:
        """Create or replace the stored value of an object with `raw` (JSON text without
        resourceVersion, as the registry stores it), bypassing every check. `kind`: a
        built-in kind's name, or a Kind (a custom resource's)."""
        data = raw.encode() if isinstance(raw, str) else raw
        key = key_for(BY_KIND[kind] if isinstance(kind, str) else kind, namespace, name)

        async def put() -> None:
            store = self.server.store
            assert store is not None
            kv = await store.get(key)
            if kv is None:
                await store.create(key, data)
            else:
                await store.update(key, data, kv.mod_revision)

        self.run(put())

    def put_json(self, kind: str | Kind, namespace: str | None, name: str, obj: Any) -> None:
        self.put_raw(kind, namespace, name, json.dumps(obj, separators=(",", ":")))

    def delete_raw(self, kind: str, namespace: str | None, name: str) -> None:
        key = key_for(BY_KIND[kind], namespace, name)

        async def delete() -> None:
            store = self.server.store
            assert store is not None
            await store.delete(key)

        self.run(delete())

    # -- kubectl --------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["KUBECACHEDIR"] = str(self.data_dir.parent / f"{self.data_dir.name}-kubecache")
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [KUBECTL, *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=60,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
        return res

    def apply(self, *objects: dict[str, Any]) -> None:
        doc = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.kubectl("apply", "-f", "-", input=json.dumps(doc))
