"""CustomResourceDefinitions and custom resources through the real kubectl against a real
kubesvc API server process: validation, defaulting, status and scale, printer columns,
explain, server-side apply, watch, several versions, deletion; the Gateway API and MetalLB
CRDs from their releases."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import KUBECTL, ApiServerProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_API = ROOT / "tests" / "e2e" / "fixtures" / "gateway-api"
METALLB = ROOT / "kubesvc" / "addons" / "metallb-crds.yaml"


def widget_crd(group: str) -> str:
    return f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wdg]
    categories: [all]
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
  - name: v1
    served: true
    storage: true
    subresources:
      status: {{}}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - {{name: Color, type: string, jsonPath: .spec.color}}
    - {{name: Size, type: integer, jsonPath: .spec.size}}
    - {{name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}}
    schema:
      openAPIV3Schema:
        type: object
        description: A Widget is made in many colors.
        properties:
          spec:
            type: object
            required: [color]
            properties:
              color:
                type: string
                enum: [red, blue]
                description: The color of the widget.
              size: {{type: integer, minimum: 1, maximum: 10, default: 3}}
              replicas: {{type: integer, default: 1}}
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {{type: string}}
                    port: {{type: integer}}
          status:
            type: object
            properties:
              replicas: {{type: integer}}
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {{type: string}}
                    status: {{type: string}}
"""


@pytest.fixture
def group(api: ApiServerProcess) -> Iterator[str]:
    """A CRD of Widgets in a group of the test's own; deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}.example.com"
    api.out("apply", "-f", "-", input=widget_crd(name))
    api.out("wait", "--for=condition=Established", f"crd/widgets.{name}", "--timeout=20s")
    try:
        yield name
    finally:
        api.kubectl("delete", "crd", f"widgets.{name}", "--ignore-not-found", check=False)


def _widget(name: str, group: str, version: str = "v1", **spec: object) -> str:
    return json.dumps(
        {
            "apiVersion": f"{group}/{version}",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def test_crd_status_and_discovery(api: ApiServerProcess, group: str) -> None:
    crd = json.loads(api.out("get", "crd", f"widgets.{group}", "-o", "json"))
    conditions = {c["type"]: c for c in crd["status"]["conditions"]}
    assert conditions["NamesAccepted"]["status"] == "True"
    assert conditions["Established"]["reason"] == "InitialNamesAccepted"
    assert crd["status"]["storedVersions"] == ["v1"]
    assert crd["status"]["acceptedNames"]["shortNames"] == ["wdg"]
    assert "customresourcecleanup.apiextensions.k8s.io" in crd["metadata"]["finalizers"]
    resources = api.out("api-resources", "--api-group", group)
    assert "widgets" in resources and "wdg" in resources and "Widget" in resources
    versions = api.out("api-versions")
    assert f"{group}/v1\n" in versions and f"{group}/v1beta1\n" in versions
    # a second CRD asking for a name the first has is not accepted
    other = widget_crd(group).replace(f"widgets.{group}", f"gadgets.{group}")
    other = other.replace("plural: widgets", "plural: gadgets").replace("[wdg]", "[gdg]")
    api.out("apply", "-f", "-", input=other)
    try:
        deadline = time.monotonic() + 10
        while True:
            gadget = json.loads(api.out("get", "crd", f"gadgets.{group}", "-o", "json"))
            conds = {c["type"]: c for c in gadget["status"].get("conditions") or []}
            if "NamesAccepted" in conds or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert conds["NamesAccepted"]["status"] == "False"
        assert conds["NamesAccepted"]["reason"] == "NameConflict"
        assert conds["NamesAccepted"]["message"] == '"widget" is already in use'
        assert conds["Established"]["status"] == "False"
    finally:
        api.out("delete", "crd", f"gadgets.{group}")


def test_invalid_crds_are_refused(api: ApiServerProcess) -> None:
    bad = widget_crd("bad.example.com").replace("storage: false", "storage: true")
    err = api.fails("apply", "-f", "-", input=bad)
    assert "must have exactly one version marked as storage version" in err
    bad = widget_crd("bad.example.com").replace("size: {type: integer,", "size: {")
    err = api.fails("apply", "-f", "-", input=bad)
    assert (
        "spec.versions[1].schema.openAPIV3Schema.properties[spec].properties[size].type: "
        "Required value: must not be empty for specified object fields"
    ) in err
    bad = widget_crd("bad.example.com").replace("name: widgets.bad", "name: things.bad")
    err = api.fails("apply", "-f", "-", input=bad)
    name_error = 'metadata.name: Invalid value: "things.bad.example.com": must be '
    assert name_error + 'spec.names.plural+"."+spec.group' in err


def test_validation_defaulting_columns_and_explain(
    api: ApiServerProcess, ns: str, group: str
) -> None:
    api.out("create", "-n", ns, "-f", "-", input=_widget("w1", group, color="red"))
    obj = json.loads(api.out("get", "-n", ns, f"widgets.{group}", "w1", "-o", "json"))
    assert obj["spec"] == {"color": "red", "size": 3, "replicas": 1}
    assert obj["metadata"]["generation"] == 1
    err = api.fails(
        "create", "-n", ns, "-f", "-", input=_widget("w2", group, color="green", size=11)
    )
    assert 'spec.color: Unsupported value: "green": supported values: "red", "blue"' in err
    assert (
        "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10" in err
    )
    err = api.fails("create", "-n", ns, "-f", "-", input=_widget("w3", group, size=2))
    assert "spec.color: Required value" in err
    # kubectl validates strictly through the server: unknown fields are named
    err = api.fails("create", "-n", ns, "-f", "-", input=_widget("w4", group, color="red", bogus=1))
    assert 'strict decoding error: unknown field "spec.bogus"' in err
    api.out("patch", "-n", ns, f"widgets.{group}", "w1", "--subresource=status", "--type=merge",
            "-p", '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}')  # fmt: skip
    lines = api.out("get", "-n", ns, "wdg").splitlines()
    # the version's columns replace the default AGE, as upstream
    assert lines[0].split() == ["NAME", "COLOR", "SIZE", "READY"]
    assert lines[1].split()[:4] == ["w1", "red", "3", "True"]
    assert f"widget.{group}/w1" in api.out("get", "all", "-n", ns)
    explain = api.out("explain", f"widgets.{group}.spec.color")
    assert "The color of the widget." in explain and "<string>" in explain
    assert "A Widget is made in many colors." in api.out("explain", f"widgets.{group}")


def test_status_scale_patch_and_server_side_apply(
    api: ApiServerProcess, ns: str, group: str
) -> None:
    res = f"widgets.{group}"
    api.out("create", "-n", ns, "-f", "-", input=_widget("w", group, color="red"))
    # status is a subresource: a spec write does not change it
    api.out("patch", "-n", ns, res, "w", "--type=merge",
            "-p", '{"spec":{"size":5},"status":{"replicas":9}}')  # fmt: skip
    obj = json.loads(api.out("get", "-n", ns, res, "w", "-o", "json"))
    assert obj["spec"]["size"] == 5 and "status" not in obj
    assert obj["metadata"]["generation"] == 2
    api.out("scale", "-n", ns, res, "w", "--replicas=4")
    scale = json.loads(api.out("get", "--raw", f"/apis/{group}/v1/namespaces/{ns}/widgets/w/scale"))
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 4
    err = api.fails("patch", "-n", ns, res, "w", "--type=strategic", "-p", '{"spec":{"size":1}}')
    assert "application/strategic-merge-patch+json is not supported" in err
    api.out("patch", "-n", ns, res, "w", "--type=json",
            "-p", '[{"op":"replace","path":"/spec/color","value":"blue"}]')  # fmt: skip
    applied = _widget("w", group, color="blue", ports=[{"name": "http", "port": 80}])
    api.out("apply", "--server-side", "--force-conflicts", "-n", ns, "-f", "-", input=applied)
    obj = json.loads(api.out("get", "-n", ns, res, "w", "-o", "json", "--show-managed-fields"))
    assert obj["spec"]["ports"] == [{"name": "http", "port": 80}]
    managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
    assert "kubectl" in managers
    # x-kubernetes-list-type: map: another manager's entry is merged in, not a conflict
    other = _widget("w", group, color="blue", ports=[{"name": "dns", "port": 53}])
    api.out("apply", "--server-side", "--field-manager=other", "-n", ns, "-f", "-", input=other)
    obj = json.loads(api.out("get", "-n", ns, res, "w", "-o", "json"))
    assert obj["spec"]["ports"] == [{"name": "http", "port": 80}, {"name": "dns", "port": 53}]
    # another version of the same object: only apiVersion differs
    old = json.loads(api.out("get", "--raw", f"/apis/{group}/v1beta1/namespaces/{ns}/widgets/w"))
    assert old["apiVersion"] == f"{group}/v1beta1" and old["spec"] == obj["spec"]
    by_selector = api.out("get", "-n", ns, res, "--field-selector", "metadata.name=w", "-o", "name")
    assert by_selector.strip() == f"widget.{group}/w"


def test_watch_and_crd_deletion_removes_objects(api: ApiServerProcess, ns: str, group: str) -> None:
    res = f"widgets.{group}"
    watch = subprocess.Popen(
        [KUBECTL, "get", "-n", ns, res, "--watch", "-o", "name"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=api.env(),
    )
    try:
        time.sleep(1.0)
        for name in ("a", "b"):
            api.out("create", "-n", ns, "-f", "-", input=_widget(name, group, color="red"))
        seen: list[str] = []
        assert watch.stdout is not None
        deadline = time.monotonic() + 15
        while len(seen) < 2 and time.monotonic() < deadline:
            line = watch.stdout.readline()
            if line:
                seen.append(line.strip())
        assert seen == [f"widget.{group}/a", f"widget.{group}/b"]
    finally:
        watch.kill()
        watch.wait()
    api.out("delete", "crd", res, "--timeout=30s")
    assert api.kubectl("get", "crd", res, check=False).returncode != 0
    err = api.fails("get", "--raw", f"/apis/{group}/v1/namespaces/{ns}/widgets")
    assert "NotFound" in err or "not found" in err
    # a CRD of the same name again starts empty
    api.out("apply", "-f", "-", input=widget_crd(group))
    api.out("wait", "--for=condition=Established", f"crd/{res}", "--timeout=20s")
    assert api.out("get", "-n", ns, res, "-o", "name").strip() == ""


@pytest.fixture
def gateway_api(api: ApiServerProcess) -> Iterator[None]:
    # the HTTPRoute CRD is too large for client-side apply's last-applied annotation
    api.out("apply", "--server-side", "-f", str(GATEWAY_API))
    try:
        for path in sorted(GATEWAY_API.glob("*.yaml")):
            name = path.name.removeprefix("gateway.networking.k8s.io_").removesuffix(".yaml")
            api.out(
                "wait",
                "--for=condition=Established",
                f"crd/{name}.gateway.networking.k8s.io",
                "--timeout=30s",
            )
        yield
    finally:
        api.kubectl("delete", "-f", str(GATEWAY_API), "--ignore-not-found", check=False)


@pytest.fixture
def metallb(api: ApiServerProcess) -> Iterator[None]:
    api.out("apply", "-f", str(METALLB))
    try:
        api.out(
            "wait", "--for=condition=Established", "crd/ipaddresspools.metallb.io", "--timeout=30s"
        )
        yield
    finally:
        api.kubectl("delete", "-f", str(METALLB), "--ignore-not-found", check=False)


def test_gateway_api_crds(api: ApiServerProcess, ns: str, gateway_api: None) -> None:
    api.out("apply", "-n", ns, "-f", "-", input=GATEWAY_OBJECTS)
    lines = api.out("get", "-n", ns, "gateway").splitlines()
    assert lines[0].split() == ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"]
    assert lines[1].split()[:2] == ["web", "kubesvc"]
    route = json.loads(api.out("get", "-n", ns, "httproute", "web", "-o", "json"))
    backend = route["spec"]["rules"][0]["backendRefs"][0]
    assert backend == {"group": "", "kind": "Service", "name": "web", "port": 80, "weight": 1}
    assert route["spec"]["parentRefs"][0]["kind"] == "Gateway"
    err = api.fails(
        "apply", "-n", ns, "-f", "-",
        input=GATEWAY_OBJECTS.replace("port: 80}", "port: 99999}"),
    )  # fmt: skip
    assert "should be less than or equal to 65535" in err
    assert "Port is the network port" in api.out("explain", "gateway.spec.listeners.port")


GATEWAY_OBJECTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: kubesvc}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web}
spec:
  gatewayClassName: kubesvc
  listeners:
  - {name: http, protocol: HTTP, port: 80}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: web}]
  hostnames: [web.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web, port: 80}]
"""


def test_metallb_crds(api: ApiServerProcess, ns: str, metallb: None) -> None:
    api.out("apply", "-n", ns, "-f", "-", input=METALLB_OBJECTS)
    lines = api.out("get", "-n", ns, "ipaddresspools").splitlines()
    assert lines[0].split()[:3] == ["NAME", "AUTO", "ASSIGN"]
    assert lines[1].split()[0] == "pool"
    pool = json.loads(api.out("get", "-n", ns, "ipaddresspool", "pool", "-o", "json"))
    assert pool["spec"]["addresses"] == ["192.168.10.0/24"]
    assert pool["spec"]["autoAssign"] is True  # defaulted
    assert "pool" in api.out("get", "-n", ns, "l2advertisements", "l2", "-o", "yaml")


METALLB_OBJECTS = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: pool}
spec:
  addresses: [192.168.10.0/24]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2}
spec:
  ipAddressPools: [pool]
"""


def test_hostile_custom_objects_get_4xx(
    api: ApiServerProcess, ns: str, group: str, tmp_path: Path
) -> None:
    collection = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    deep = '{"a":' * 5000 + '"x"' + "}" * 5000
    wide = [{"name": "same", "port": i} for i in range(50_000)]
    cases = {
        "deep": (
            _widget("deep", group, color="red", extra=0).replace("0}", deep + "}"),
            "nested more than",
        ),
        "type": (
            _widget("type", group, color=["red"], size={"a": 1}),
            'spec.color: Invalid value: "array": spec.color in body must be of type string',
        ),
        "wide": (
            _widget("wide", group, color="red", ports=wide),
            'spec.ports[1]: Duplicate value: {"name":"same"}',
        ),
        "meta": (
            _widget("meta", group, color="red").replace('{"name"', '{"labels": 5, "name"'),
            "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels",
        ),
        "spec": (
            _widget("spec", group).replace('"spec": {}', '"spec": "text"'),
            'spec: Invalid value: "string": spec in body must be of type object: "string"',
        ),
    }
    for name, (body, expected) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(body)
        err = api.fails("create", "--raw", collection, "-f", str(path))
        assert expected in err and "InternalError" not in err, (name, err[:500])
    assert api.out("get", "-n", ns, f"widgets.{group}", "-o", "name") == ""
    # a CRD whose schema nests deeper than the server takes is refused, not a crash
    schema: dict[str, object] = {"type": "string"}
    for _ in range(120):
        schema = {"type": "object", "properties": {"a": schema}}
    crd = json.loads(api.out("get", "crd", f"widgets.{group}", "-o", "json"))
    deep_crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"deeps.{group}"},
        "spec": {
            **{k: crd["spec"][k] for k in ("group", "scope")},
            "names": {"plural": "deeps", "kind": "Deep"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "properties": {"spec": schema}}
                    },
                }
            ],
        },
    }
    err = api.fails("create", "-f", "-", input=json.dumps(deep_crd))
    assert "InternalError" not in err and ("nested more than" in err or "must not be nested" in err)


def test_schema_changes_namespace_deletion_and_restart(tmp_path: Path) -> None:
    """A server of its own: CRDs and custom objects survive kill -9, a default added to the
    schema shows on objects stored before it, and deleting a namespace deletes its custom
    objects."""
    server = ApiServerProcess(tmp_path / "data")
    server.start()
    try:
        group = "restart.example.com"
        res = f"widgets.{group}"
        server.out("apply", "-f", "-", input=widget_crd(group))
        server.out("wait", "--for=condition=Established", f"crd/{res}", "--timeout=20s")
        for ns in ("keep", "gone"):
            server.out("create", "namespace", ns)
            server.out("create", "-n", ns, "-f", "-", input=_widget("w", group, color="red"))
        server.kill9()
        server.start()
        obj = json.loads(server.out("get", "-n", "keep", res, "w", "-o", "json"))
        assert obj["spec"]["color"] == "red" and "label" not in obj["spec"]
        assert "wdg" in server.out("api-resources", "--api-group", group)
        # a new field with a default: served on the stored object without a write
        crd = json.loads(server.out("get", "crd", res, "-o", "json"))
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["properties"]["label"] = {"type": "string", "default": "none"}
        server.out("replace", "-f", "-", input=json.dumps(crd))
        deadline = time.monotonic() + 10
        while True:
            obj = json.loads(server.out("get", "-n", "keep", res, "w", "-o", "json"))
            if obj["spec"].get("label") == "none" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert obj["spec"]["label"] == "none"
        server.out("delete", "namespace", "gone", "--timeout=30s")
        assert server.out("get", res, "-A", "-o", "name").split() == [f"widget.{group}/w"]
    finally:
        server.stop()


def test_official_python_client(api: ApiServerProcess, ns: str) -> None:
    """The kubernetes client's typed CRD API, CustomObjectsApi and its watch, unchanged."""
    from kubernetes import client, config, watch

    api_client = config.new_client_from_config(config_file=str(api.kubeconfig))
    group = f"py{uuid.uuid4().hex[:8]}.example.com"
    ext = client.ApiextensionsV1Api(api_client)
    body = client.V1CustomResourceDefinition(
        metadata=client.V1ObjectMeta(name=f"gizmos.{group}"),
        spec=client.V1CustomResourceDefinitionSpec(
            group=group,
            scope="Namespaced",
            names=client.V1CustomResourceDefinitionNames(plural="gizmos", kind="Gizmo"),
            versions=[
                client.V1CustomResourceDefinitionVersion(
                    name="v1",
                    served=True,
                    storage=True,
                    schema=client.V1CustomResourceValidation(
                        open_apiv3_schema=client.V1JSONSchemaProps(
                            type="object",
                            properties={
                                "spec": client.V1JSONSchemaProps(
                                    type="object",
                                    properties={
                                        "level": client.V1JSONSchemaProps(type="integer", default=7)
                                    },
                                )
                            },
                        )
                    ),
                )
            ],
        ),
    )
    ext.create_custom_resource_definition(body)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            crd = ext.read_custom_resource_definition(f"gizmos.{group}")
            conditions = {c.type: c.status for c in crd.status.conditions or []}
            if conditions.get("Established") == "True":
                break
            time.sleep(0.05)
        assert conditions.get("Established") == "True"
        custom = client.CustomObjectsApi(api_client)
        gizmo = {"apiVersion": f"{group}/v1", "kind": "Gizmo", "metadata": {"name": "g"}}
        created = custom.create_namespaced_custom_object(group, "v1", ns, "gizmos", gizmo)
        assert "spec" not in created  # defaults apply inside objects that are there
        custom.delete_namespaced_custom_object(group, "v1", ns, "gizmos", "g")
        gizmo["spec"] = {}
        created = custom.create_namespaced_custom_object(group, "v1", ns, "gizmos", gizmo)
        assert created["spec"] == {"level": 7}
        patched = custom.patch_namespaced_custom_object(
            group, "v1", ns, "gizmos", "g", {"spec": {"level": 9}}
        )
        assert patched["spec"]["level"] == 9
        listed = custom.list_namespaced_custom_object(group, "v1", ns, "gizmos")
        rv = listed["metadata"]["resourceVersion"]
        assert [i["metadata"]["name"] for i in listed["items"]] == ["g"]
        custom.delete_namespaced_custom_object(group, "v1", ns, "gizmos", "g")
        events = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            group,
            "v1",
            ns,
            "gizmos",
            resource_version=rv,
            timeout_seconds=5,
        )
        first = next(iter(events))
        assert first["type"] == "DELETED" and first["object"]["metadata"]["name"] == "g"
    finally:
        ext.delete_custom_resource_definition(f"gizmos.{group}")
        api_client.close()
