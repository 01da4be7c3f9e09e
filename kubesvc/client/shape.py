"""The types consumers rely on, checked once when an object arrives.

The API server refuses wrong-typed bodies, but what is already stored (older data, or
written straight to the store) can be anything: `labels: "x"`, `ports: "80"`, `replicas: NaN`.
Consumers read objects as plain dicts, so every informer that feeds them can run a kind's
check in its transform and keep out, with one log line per object revision, an object whose
fields have other types than the API's (client-go's typed decoding does the same for Go
controllers). Behind the check, code may index fields without guarding every access.

A check only looks at the fields listed for a kind (the ones some consumer reads); other
fields are not examined. `null` is accepted anywhere: the API treats it as an absent field.
Numbers must be integers (JSON `1.0`, `NaN` and `Infinity` are not), as Go's decoder wants.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kubesvc.api.objmeta import meta

Check = Callable[[Any], None]


class Invalid(ValueError):
    """An object (or a field of one) a consumer cannot use; `path` is the field path."""

    def __init__(self, why: str, path: tuple[str, ...] = ()) -> None:
        super().__init__(why)
        self.why = why
        self.path = path

    def within(self, segment: str) -> Invalid:
        return Invalid(self.why, (segment, *self.path))

    def __str__(self) -> str:
        if not self.path:
            return self.why
        text = ""
        for seg in self.path:
            text += seg if seg.startswith("[") or not text else "." + seg
        return f"{text}: {self.why}"


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float):
        return "number"  # also NaN and Infinity
    return {dict: "object", list: "array", str: "string", int: "integer"}.get(
        type(value), type(value).__name__
    )


def _wrong(want: str, value: Any) -> Invalid:
    return Invalid(f"expected {want}, got {_type_name(value)}")


# -- leaf checks -------------------------------------------------------------------------------
def string(value: Any) -> None:
    if value.__class__ is not str:
        raise _wrong("string", value)


def integer(value: Any) -> None:
    if value.__class__ is not int:  # not bool, not float
        raise _wrong("integer", value)


def boolean(value: Any) -> None:
    if value.__class__ is not bool:
        raise _wrong("boolean", value)


def int_or_string(value: Any) -> None:
    cls = value.__class__
    if cls is not int and cls is not str:
        raise _wrong("integer or string", value)


def anything(value: Any) -> None:
    return None


def string_map(value: Any) -> None:
    """A map of strings (labels, annotations, selectors)."""
    if value.__class__ is not dict:
        raise _wrong("map of strings", value)
    for k, v in value.items():
        if v.__class__ is not str:
            raise Invalid(f"expected string, got {_type_name(v)}", (str(k),))


def map_of(check: Check) -> Check:
    def run(value: Any) -> None:
        if value.__class__ is not dict:
            raise _wrong("object", value)
        for k, v in value.items():
            if v is not None:
                try:
                    check(v)
                except Invalid as e:
                    raise e.within(str(k)) from None

    return run


def list_of(check: Check) -> Check:
    def run(value: Any) -> None:
        if value.__class__ is not list:
            raise _wrong("array", value)
        for i, v in enumerate(value):
            if v is None:
                raise Invalid("expected a value, got null", (f"[{i}]",))
            try:
                check(v)
            except Invalid as e:
                raise e.within(f"[{i}]") from None

    return run


def fields(required: tuple[str, ...] = (), **checks: Check) -> Check:
    """An object; the listed fields, when present and not null, must pass their check."""
    items = checks.items

    def run(value: Any) -> None:
        if value.__class__ is not dict:
            raise _wrong("object", value)
        for name in required:
            if value.get(name) is None:
                raise Invalid("required field is missing", (name,))
        for name, check in items():
            v = value.get(name)
            if v is not None:
                try:
                    check(v)
                except Invalid as e:
                    raise e.within(name) from None

    return run


# -- what the consumers read -------------------------------------------------------------------
OWNER_REFERENCE = fields(
    apiVersion=string,
    kind=string,
    name=string,
    uid=string,
    controller=boolean,
    blockOwnerDeletion=boolean,
)
OBJECT_META = fields(
    name=string,
    namespace=string,
    generateName=string,
    uid=string,
    resourceVersion=string,
    generation=integer,
    creationTimestamp=string,
    deletionTimestamp=string,
    deletionGracePeriodSeconds=integer,
    labels=string_map,
    annotations=string_map,
    ownerReferences=list_of(OWNER_REFERENCE),
    finalizers=list_of(string),
)
CONDITION = fields(
    type=string,
    status=string,
    reason=string,
    message=string,
    lastTransitionTime=string,
    lastUpdateTime=string,
    lastHeartbeatTime=string,
    lastProbeTime=string,
)
OBJECT_REFERENCE = fields(
    apiVersion=string,
    kind=string,
    namespace=string,
    name=string,
    uid=string,
    resourceVersion=string,
    fieldPath=string,
)
LABEL_SELECTOR = fields(
    matchLabels=string_map,
    matchExpressions=list_of(fields(key=string, operator=string, values=list_of(string))),
)
NODE_SELECTOR_REQUIREMENT = fields(key=string, operator=string, values=list_of(string))
CONTAINER = fields(
    name=string,
    restartPolicy=string,
    ports=list_of(fields(name=string, containerPort=integer, hostPort=integer, protocol=string)),
)
POD_SPEC = fields(
    nodeName=string,
    hostname=string,
    subdomain=string,
    schedulerName=string,
    restartPolicy=string,
    preemptionPolicy=string,
    priority=integer,
    terminationGracePeriodSeconds=integer,
    containers=list_of(CONTAINER),
    initContainers=list_of(CONTAINER),
    nodeSelector=string_map,
    tolerations=list_of(
        fields(key=string, operator=string, value=string, effect=string, tolerationSeconds=integer)
    ),
    affinity=fields(
        nodeAffinity=fields(
            requiredDuringSchedulingIgnoredDuringExecution=fields(
                nodeSelectorTerms=list_of(
                    fields(
                        matchExpressions=list_of(NODE_SELECTOR_REQUIREMENT),
                        matchFields=list_of(NODE_SELECTOR_REQUIREMENT),
                    )
                )
            )
        )
    ),
    schedulingGates=list_of(fields(name=string)),
)
POD_STATUS = fields(
    phase=string,
    hostIP=string,
    podIP=string,
    podIPs=list_of(fields(ip=string)),
    conditions=list_of(CONDITION),
    containerStatuses=list_of(fields(name=string, ready=boolean, restartCount=integer)),
)
POD_TEMPLATE = fields(
    metadata=fields(labels=string_map, annotations=string_map, finalizers=list_of(string)),
    spec=POD_SPEC,
)
SERVICE_PORT = fields(
    name=string,
    protocol=string,
    appProtocol=string,
    port=integer,
    targetPort=int_or_string,
    nodePort=integer,
)
ENDPOINT_PORT = fields(name=string, protocol=string, appProtocol=string, port=integer)
ENDPOINT_ADDRESS = fields(ip=string, hostname=string, nodeName=string, targetRef=OBJECT_REFERENCE)
WORKLOAD_STATUS = dict(
    replicas=integer,
    updatedReplicas=integer,
    readyReplicas=integer,
    availableReplicas=integer,
    unavailableReplicas=integer,
    fullyLabeledReplicas=integer,
    observedGeneration=integer,
    collisionCount=integer,
    conditions=list_of(CONDITION),
)

JOB_SPEC = fields(
    parallelism=integer,
    completions=integer,
    activeDeadlineSeconds=integer,
    backoffLimit=integer,
    ttlSecondsAfterFinished=integer,
    suspend=boolean,
    manualSelector=boolean,
    completionMode=string,
    selector=LABEL_SELECTOR,
    template=POD_TEMPLATE,
)


def _kind(required_name: bool = True, **parts: Check) -> Check:
    top = fields(metadata=OBJECT_META, **parts)

    def run(value: Any) -> None:
        if value.__class__ is not dict:
            raise _wrong("object", value)
        m = value.get("metadata")
        if m.__class__ is not dict:
            raise Invalid(
                "required field is missing" if m is None else "expected object", ("metadata",)
            )
        if required_name and not m.get("name"):
            raise Invalid("required field is missing", ("metadata", "name"))
        top(value)

    return run


KIND_CHECKS: dict[str, Check] = {
    "Service": _kind(
        spec=fields(
            type=string,
            clusterIP=string,
            clusterIPs=list_of(string),
            ipFamilies=list_of(string),
            ipFamilyPolicy=string,
            externalName=string,
            externalIPs=list_of(string),
            selector=string_map,
            ports=list_of(SERVICE_PORT),
            publishNotReadyAddresses=boolean,
            sessionAffinity=string,
            sessionAffinityConfig=fields(clientIP=fields(timeoutSeconds=integer)),
            externalTrafficPolicy=string,
            internalTrafficPolicy=string,
            healthCheckNodePort=integer,
            loadBalancerIP=string,
            loadBalancerSourceRanges=list_of(string),
        ),
        status=fields(loadBalancer=fields(ingress=list_of(fields(ip=string, hostname=string)))),
    ),
    "Endpoints": _kind(
        subsets=list_of(
            fields(
                addresses=list_of(ENDPOINT_ADDRESS),
                notReadyAddresses=list_of(ENDPOINT_ADDRESS),
                ports=list_of(ENDPOINT_PORT),
            )
        )
    ),
    "EndpointSlice": _kind(
        addressType=string,
        ports=list_of(ENDPOINT_PORT),
        endpoints=list_of(
            fields(
                addresses=list_of(string),
                conditions=fields(ready=boolean, serving=boolean, terminating=boolean),
                hostname=string,
                nodeName=string,
                zone=string,
                targetRef=OBJECT_REFERENCE,
                hints=fields(forZones=list_of(fields(name=string))),
            )
        ),
    ),
    "Pod": _kind(spec=POD_SPEC, status=POD_STATUS),
    "Node": _kind(
        spec=fields(
            unschedulable=boolean,
            podCIDR=string,
            podCIDRs=list_of(string),
            taints=list_of(fields(key=string, value=string, effect=string, timeAdded=string)),
        ),
        status=fields(
            conditions=list_of(CONDITION),
            allocatable=map_of(int_or_string),
            capacity=map_of(int_or_string),
            addresses=list_of(fields(type=string, address=string)),
        ),
    ),
    "Namespace": _kind(spec=fields(finalizers=list_of(string)), status=fields(phase=string)),
    "Lease": _kind(
        spec=fields(
            holderIdentity=string,
            renewTime=string,
            acquireTime=string,
            leaseDurationSeconds=integer,
            leaseTransitions=integer,
        )
    ),
    "ReplicaSet": _kind(
        spec=fields(
            replicas=integer,
            minReadySeconds=integer,
            selector=LABEL_SELECTOR,
            template=POD_TEMPLATE,
        ),
        status=fields(**WORKLOAD_STATUS),
    ),
    "Deployment": _kind(
        spec=fields(
            replicas=integer,
            minReadySeconds=integer,
            revisionHistoryLimit=integer,
            progressDeadlineSeconds=integer,
            paused=boolean,
            selector=LABEL_SELECTOR,
            template=POD_TEMPLATE,
            strategy=fields(
                type=string,
                rollingUpdate=fields(maxSurge=int_or_string, maxUnavailable=int_or_string),
            ),
        ),
        status=fields(**WORKLOAD_STATUS),
    ),
    "ReplicationController": _kind(
        spec=fields(
            replicas=integer,
            minReadySeconds=integer,
            selector=string_map,
            template=POD_TEMPLATE,
        ),
        status=fields(**WORKLOAD_STATUS),
    ),
    "DaemonSet": _kind(
        spec=fields(
            minReadySeconds=integer,
            revisionHistoryLimit=integer,
            selector=LABEL_SELECTOR,
            template=POD_TEMPLATE,
            updateStrategy=fields(
                type=string,
                rollingUpdate=fields(maxSurge=int_or_string, maxUnavailable=int_or_string),
            ),
        ),
        status=fields(
            currentNumberScheduled=integer,
            numberMisscheduled=integer,
            desiredNumberScheduled=integer,
            numberReady=integer,
            updatedNumberScheduled=integer,
            numberAvailable=integer,
            numberUnavailable=integer,
            observedGeneration=integer,
            collisionCount=integer,
            conditions=list_of(CONDITION),
        ),
    ),
    "StatefulSet": _kind(
        spec=fields(
            replicas=integer,
            minReadySeconds=integer,
            serviceName=string,
            podManagementPolicy=string,
            revisionHistoryLimit=integer,
            selector=LABEL_SELECTOR,
            template=POD_TEMPLATE,
            updateStrategy=fields(
                type=string,
                rollingUpdate=fields(partition=integer, maxUnavailable=int_or_string),
            ),
            volumeClaimTemplates=list_of(
                fields(metadata=fields(name=string, labels=string_map), spec=anything)
            ),
            ordinals=fields(start=integer),
        ),
        status=fields(
            replicas=integer,
            readyReplicas=integer,
            currentReplicas=integer,
            updatedReplicas=integer,
            availableReplicas=integer,
            currentRevision=string,
            updateRevision=string,
            observedGeneration=integer,
            collisionCount=integer,
        ),
    ),
    "Job": _kind(
        spec=JOB_SPEC,
        status=fields(
            active=integer,
            succeeded=integer,
            failed=integer,
            ready=integer,
            terminating=integer,
            startTime=string,
            completionTime=string,
            conditions=list_of(CONDITION),
        ),
    ),
    "CronJob": _kind(
        spec=fields(
            schedule=string,
            timeZone=string,
            startingDeadlineSeconds=integer,
            concurrencyPolicy=string,
            suspend=boolean,
            successfulJobsHistoryLimit=integer,
            failedJobsHistoryLimit=integer,
            jobTemplate=fields(
                metadata=fields(labels=string_map, annotations=string_map), spec=JOB_SPEC
            ),
        ),
        status=fields(
            active=list_of(OBJECT_REFERENCE),
            lastScheduleTime=string,
            lastSuccessfulTime=string,
        ),
    ),
    "PersistentVolumeClaim": _kind(
        spec=fields(
            accessModes=list_of(string),
            storageClassName=string,
            volumeName=string,
            volumeMode=string,
            selector=LABEL_SELECTOR,
            resources=fields(requests=map_of(int_or_string)),
        ),
        status=fields(phase=string),
    ),
    "PersistentVolume": _kind(
        spec=fields(
            accessModes=list_of(string),
            storageClassName=string,
            volumeMode=string,
            capacity=map_of(int_or_string),
            claimRef=OBJECT_REFERENCE,
        ),
        status=fields(phase=string),
    ),
    "StorageClass": _kind(volumeBindingMode=string),
}
_DEFAULT_CHECK = _kind()


def checker(kind: str) -> Check:
    """The check for a kind (kinds not listed: a metadata object with a name)."""
    return KIND_CHECKS.get(kind, _DEFAULT_CHECK)


def check(kind: str, obj: Any) -> None:
    """Raise Invalid when `obj` is not usable as a `kind` (see the module's docstring)."""
    checker(kind)(obj)


def problem(kind: str, obj: Any) -> str | None:
    """What is wrong with `obj` as a `kind`, or None when nothing is."""
    try:
        check(kind, obj)
    except Invalid as e:
        return str(e)
    return None


# -- reading single fields without a whole check ----------------------------------------------
def typed_field(obj: Mapping[str, Any], name: str, cls: type, default: Any, *path: str) -> Any:
    """obj[name] if it is a `cls`, `default` when absent or null, else Invalid (at
    path.name): how the consumers' parse steps read one field."""
    value = obj.get(name)
    if value is None:
        return default
    if value.__class__ is not cls:
        raise Invalid(f"expected {cls.__name__}, got {type(value).__name__}", (*path, name))
    return value


def text(value: Any) -> str:
    """A string field's value; "" for anything that is not a string."""
    return value if value.__class__ is str else ""


def revision(obj: Any) -> str:
    return text(meta(obj).get("resourceVersion"))


def identity(obj: Any) -> str:
    """`ns/name (rv N)` for log lines about an object, whatever its shape."""
    m = meta(obj)
    ns, name = text(m.get("namespace")), text(m.get("name")) or "?"
    rv = text(m.get("resourceVersion"))
    where = f"{ns}/{name}" if ns else name
    return f"{where} (resourceVersion {rv})" if rv else where
