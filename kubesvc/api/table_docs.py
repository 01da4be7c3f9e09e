"""Descriptions of the fields that later kinds' Table columns cite (upstream takes them from
SwaggerDoc): the text of our OpenAPI documents, kept here so a Table never parses a document
on the request path. tests/unit/test_tables.py checks they match the documents."""

from __future__ import annotations

FIELD_DOCS: dict[tuple[str, str], str] = {
    ("io.k8s.api.apps.v1.DaemonSetSpec", "selector"): (
        "A label selector is a label query over a set of resources."
    ),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "currentNumberScheduled"): (
        "The number of nodes that are running at least 1 daemon pod and are supposed to "
        "run the daemon pod. More info: "
        "https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"
    ),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "desiredNumberScheduled"): (
        "The total number of nodes that should be running the daemon pod (including nodes"
        " correctly running the daemon pod). More info: "
        "https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"
    ),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "numberAvailable"): (
        "The number of nodes that should be running the daemon pod and have one or more "
        "of the daemon pod running and available (ready for at least "
        "spec.minReadySeconds)"
    ),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "numberReady"): (
        "numberReady is the number of nodes that should be running the daemon pod and "
        "have one or more of the daemon pod running with a Ready Condition."
    ),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "updatedNumberScheduled"): (
        "The total number of nodes that are running updated daemon pod"
    ),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "maxReplicas"): (
        "maxReplicas is the upper limit for the number of replicas to which the "
        "autoscaler can scale up. It cannot be less that minReplicas."
    ),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics"): (
        "metrics contains the specifications for which to use to calculate the desired "
        "replica count (the maximum replica count across all metrics will be used).  The "
        "desired replica count is calculated multiplying the ratio between the target "
        "value and the current value by the current number of pods.  Ergo, metrics used "
        "must decrease as the pod count is increased, and vice-versa.  See the individual"
        " metric source types for more information about how each type of metric must "
        "respond. If not set, the default metric will be set to 80% average CPU "
        "utilization."
    ),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "minReplicas"): (
        "minReplicas is the lower limit for the number of replicas to which the "
        "autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be "
        "0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or"
        " External metric is configured.  Scaling is active as long as at least one "
        "metric value is available."
    ),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "scaleTargetRef"): (
        "CrossVersionObjectReference contains enough information to let you identify the "
        "referred resource."
    ),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "currentReplicas"): (
        "currentReplicas is current number of replicas of pods managed by this "
        "autoscaler, as last seen by the autoscaler."
    ),
    ("io.k8s.api.batch.v1.CronJobSpec", "schedule"): (
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."
    ),
    ("io.k8s.api.batch.v1.CronJobSpec", "suspend"): (
        "This flag tells the controller to suspend subsequent executions, it does not "
        "apply to already started executions.  Defaults to false."
    ),
    ("io.k8s.api.batch.v1.CronJobSpec", "timeZone"): (
        "The time zone name for the given schedule, see "
        "https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, "
        "this will default to the time zone of the kube-controller-manager process. The "
        "set of valid time zone names and the time zone offset is loaded from the "
        "system-wide time zone database by the API server during CronJob validation and "
        "the controller manager during execution. If no system-wide time zone database "
        "can be found a bundled version of the database is used instead. If the time zone"
        " name becomes invalid during the lifetime of a CronJob or due to a change in "
        "host configuration, the controller will stop creating new new Jobs and will "
        "create a system event with the reason UnknownTimeZone. More information can be "
        "found in "
        "https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones"
    ),
    ("io.k8s.api.batch.v1.CronJobStatus", "active"): (
        "A list of pointers to currently running jobs."
    ),
    ("io.k8s.api.batch.v1.CronJobStatus", "lastScheduleTime"): (
        "Information when was the last time the job was successfully scheduled."
    ),
    ("io.k8s.api.batch.v1.JobSpec", "selector"): (
        "A label selector is a label query over a set of resources."
    ),
    ("io.k8s.api.batch.v1.JobStatus", "succeeded"): (
        "The number of pods which reached phase Succeeded. The value increases "
        "monotonically for a given spec. However, it may decrease in reaction to scale "
        "down of elastic indexed jobs."
    ),
    ("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "volumeMode"): (
        "volumeMode defines what type of volume is required by the claim. Value of "
        "Filesystem is implied when not included in claim spec."
    ),
    ("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "volumeName"): (
        "volumeName is the binding reference to the PersistentVolume backing this claim."
    ),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "accessModes"): (
        "accessModes contains the actual access modes the volume backing the PVC has. "
        "More info: "
        "https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1"
    ),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "capacity"): (
        "capacity represents the actual resources of the underlying volume."
    ),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "phase"): (
        "phase represents the current phase of PersistentVolumeClaim."
    ),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "accessModes"): (
        "accessModes contains all ways the volume can be mounted. More info: "
        "https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes"
    ),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "capacity"): (
        "capacity is the description of the persistent volume's resources and capacity. "
        "More info: "
        "https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity"
    ),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "claimRef"): (
        "ObjectReference contains enough information to let you inspect or modify the "
        "referred object."
    ),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "persistentVolumeReclaimPolicy"): (
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when "
        "released from its claim. Valid options are Retain (default for manually created "
        "PersistentVolumes), Delete (default for dynamically provisioned "
        "PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the "
        "volume plugin underlying this PersistentVolume. More info: "
        "https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming"
    ),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "volumeMode"): (
        "volumeMode defines if a volume is intended to be used with a formatted "
        "filesystem or to remain in raw block state. Value of Filesystem is implied when "
        "not included in spec."
    ),
    ("io.k8s.api.core.v1.PersistentVolumeStatus", "phase"): (
        "phase indicates if a volume is available, bound to a claim, or released by a "
        "claim. More info: "
        "https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase"
    ),
    ("io.k8s.api.core.v1.PersistentVolumeStatus", "reason"): (
        "reason is a brief CamelCase string that describes any failure and is meant for "
        "machine parsing and tidy display in the CLI."
    ),
    ("io.k8s.api.core.v1.PodSpec", "nodeSelector"): (
        "NodeSelector is a selector which must be true for the pod to fit on a node. "
        "Selector which must match a node's labels for the pod to be scheduled on that "
        "node. More info: "
        "https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"
    ),
    ("io.k8s.api.core.v1.ReplicationControllerSpec", "replicas"): (
        "Replicas is the number of desired replicas. This is a pointer to distinguish "
        "between explicit zero and unspecified. Defaults to 1. More info: https://kuberne"
        "tes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-repli"
        "cationcontroller"
    ),
    ("io.k8s.api.core.v1.ReplicationControllerSpec", "selector"): (
        "Selector is a label query over pods that should match the Replicas count. If "
        "Selector is empty, it is defaulted to the labels present on the Pod template. "
        "Label keys and values that must match in order to be controlled by this "
        "replication controller, if empty defaulted to labels on Pod template. More info:"
        " https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label"
        "-selectors"
    ),
    ("io.k8s.api.core.v1.ReplicationControllerStatus", "readyReplicas"): (
        "The number of ready replicas for this replication controller."
    ),
    ("io.k8s.api.core.v1.ReplicationControllerStatus", "replicas"): (
        "Replicas is the most recently observed number of replicas. More info: https://ku"
        "bernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-"
        "replicationcontroller"
    ),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets"): (
        "Secrets is a list of the secrets in the same namespace that pods running using "
        "this ServiceAccount are allowed to use. Pods are only limited to this list if "
        'this service account has a "kubernetes.io/enforce-mountable-secrets" annotation '
        'set to "true". The "kubernetes.io/enforce-mountable-secrets" annotation is '
        "deprecated since v1.32. Prefer separate namespaces to isolate access to mounted "
        "secrets. This field should not be used to find auto-generated service account "
        "token secrets for use outside of pods. Instead, tokens can be requested directly"
        " using the TokenRequest API, or service account token secrets can be manually "
        "created. More info: https://kubernetes.io/docs/concepts/configuration/secret"
    ),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "podSelector"): (
        "A label selector is a label query over a set of resources."
    ),
    ("io.k8s.api.rbac.v1.ClusterRoleBinding", "roleRef"): (
        "RoleRef contains information that points to the role being used."
    ),
    ("io.k8s.api.rbac.v1.RoleBinding", "roleRef"): (
        "RoleRef contains information that points to the role being used."
    ),
    ("io.k8s.api.scheduling.v1.PriorityClass", "globalDefault"): (
        "globalDefault specifies whether this PriorityClass should be considered as the "
        "default priority for pods that do not have any priority class. Only one "
        "PriorityClass can be marked as `globalDefault`. However, if more than one "
        "PriorityClasses exists with their `globalDefault` field set to true, the "
        "smallest value of such global default PriorityClasses will be used as the "
        "default priority."
    ),
    ("io.k8s.api.scheduling.v1.PriorityClass", "preemptionPolicy"): (
        "preemptionPolicy is the Policy for preempting pods with lower priority. One of "
        "Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset."
    ),
    ("io.k8s.api.scheduling.v1.PriorityClass", "value"): (
        "value represents the integer value of this priority class. This is the actual "
        "priority that pods receive when they have the name of this class in their pod "
        "spec."
    ),
    ("io.k8s.api.storage.v1.StorageClass", "allowVolumeExpansion"): (
        "allowVolumeExpansion shows whether the storage class allow volume expand."
    ),
    ("io.k8s.api.storage.v1.StorageClass", "provisioner"): (
        "provisioner indicates the type of the provisioner."
    ),
    ("io.k8s.api.storage.v1.StorageClass", "reclaimPolicy"): (
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned "
        "PersistentVolumes of this storage class. Defaults to Delete."
    ),
    ("io.k8s.api.storage.v1.StorageClass", "volumeBindingMode"): (
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and"
        " bound.  When unset, VolumeBindingImmediate is used. This field is only honored "
        "by servers that enable the VolumeScheduling feature."
    ),
}
