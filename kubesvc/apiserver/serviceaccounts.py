"""The ServiceAccount admission plugin (upstream plugin/pkg/admission/serviceaccount), run on
pod create: a pod without `spec.serviceAccountName` gets `default`; a pod naming a
ServiceAccount that does not exist is refused with upstream's message; unless
`automountServiceAccountToken` is false (the pod's choice first, then the ServiceAccount's),
the pod gets the projected volume `kube-api-access-<5 random>` (a bound token, the cluster
CA, the namespace) mounted read-only at /var/run/secrets/kubernetes.io/serviceaccount in
every container and init container that has no mount there, exactly as upstream adds it.

One difference: when the `default` ServiceAccount does not exist (an API server without the
controller-manager, or a pod created in the moment between a namespace and its `default`
account), the pod is admitted without the token volume, where upstream refuses it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kubesvc.api import errors
from kubesvc.apiserver.objects import generate_name

DEFAULT_ACCOUNT = "default"
VOLUME_PREFIX = "kube-api-access-"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_EXPIRATION = 3607  # upstream's WarnOnlyBoundTokenExpirationSeconds
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
GetAccount = Callable[[str, str], Awaitable[dict[str, Any] | None]]


def token_volume_source() -> dict[str, Any]:
    """Upstream's TokenVolumeSource."""
    return {
        "defaultMode": 0o644,
        "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_EXPIRATION}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
    }


def should_automount(account: dict[str, Any], spec: dict[str, Any]) -> bool:
    """The pod's automountServiceAccountToken wins, then the ServiceAccount's; else true."""
    if isinstance(spec.get("automountServiceAccountToken"), bool):
        return bool(spec["automountServiceAccountToken"])
    if isinstance(account.get("automountServiceAccountToken"), bool):
        return bool(account["automountServiceAccountToken"])
    return True


def _list(spec: dict[str, Any], key: str) -> list[Any]:
    value = spec.get(key)
    return value if isinstance(value, list) else []


def mount_token(spec: dict[str, Any]) -> None:
    """Add the token volume and its mounts to a pod spec, as upstream's mountServiceAccountToken:
    an existing `kube-api-access-*` volume is reused; a container already mounting something
    at the token's path keeps it."""
    names = set()
    volume_name = ""
    for volume in _list(spec, "volumes"):
        name = volume.get("name") if isinstance(volume, dict) else None
        if not isinstance(name, str):
            continue
        names.add(name)
        if name.startswith(VOLUME_PREFIX):
            volume_name = name
            break
    if not volume_name:
        volume_name = generate_name(VOLUME_PREFIX)
    mount = {"name": volume_name, "readOnly": True, "mountPath": MOUNT_PATH}
    needed = False
    for key in ("initContainers", "containers"):
        for container in _list(spec, key):
            if not isinstance(container, dict):
                continue
            mounts = container.get("volumeMounts")
            if mounts is None:
                mounts = []
            if not isinstance(mounts, list):
                continue  # validation answers for it
            if any(isinstance(m, dict) and m.get("mountPath") == MOUNT_PATH for m in mounts):
                continue
            container["volumeMounts"] = [*mounts, dict(mount)]
            needed = True
    if needed and volume_name not in names:
        volumes = spec.get("volumes")
        volumes = volumes if isinstance(volumes, list) else []
        spec["volumes"] = [*volumes, {"name": volume_name, "projected": token_volume_source()}]


async def admit(pod: dict[str, Any], namespace: str, get_account: GetAccount) -> None:
    """Apply the admission to a pod being created (in place); errors.ApiError if refused."""
    spec = pod.get("spec")
    meta = pod.get("metadata")
    if not isinstance(spec, dict) or not isinstance(meta, dict):
        return  # validation answers for a pod without a spec
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and MIRROR_ANNOTATION in annotations:
        return
    name = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if not isinstance(name, str) or not name:
        name = DEFAULT_ACCOUNT
    spec["serviceAccountName"] = name
    account = await get_account(namespace, name)
    if account is None:
        if name == DEFAULT_ACCOUNT:
            return
        pod_name = meta.get("name") or meta.get("generateName") or "Unknown"
        raise errors.forbidden_error(
            "pods",
            "",
            str(pod_name),
            f"error looking up service account {namespace}/{name}: "
            f'serviceaccount "{name}" not found',
        )
    if should_automount(account, spec):
        mount_token(spec)
    if not spec.get("imagePullSecrets"):
        pulls = account.get("imagePullSecrets")
        if isinstance(pulls, list) and pulls:
            spec["imagePullSecrets"] = [
                {"name": p.get("name", "")} for p in pulls if isinstance(p, dict)
            ]
