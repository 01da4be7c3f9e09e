"""MetalLB's resources as kubesvc uses them: the kinds its CRDs define
(kubesvc/addons/metallb-crds.yaml), the namespace it reads them from, and the pool and
advertisement `kubesvc up` creates on the cluster's own node network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubesvc.api.kinds import Kind

GROUP = "metallb.io"
NAMESPACE = "metallb-system"  # MetalLB reads its configuration from its own namespace only
CRDS_FILE = Path(__file__).resolve().parents[2] / "addons" / "metallb-crds.yaml"

IP_ADDRESS_POOL = Kind(GROUP, "v1beta1", "IPAddressPool", "ipaddresspools", "ipaddresspool", True)
L2_ADVERTISEMENT = Kind(
    GROUP, "v1beta1", "L2Advertisement", "l2advertisements", "l2advertisement", True
)


def crds() -> list[dict[str, Any]]:
    """MetalLB's CustomResourceDefinitions, as shipped (libyaml's loader when there is one:
    the pure-Python one takes 0.13 s of `kubesvc up` for these 74 KB, libyaml 0.01 s)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [d for d in yaml.load_all(CRDS_FILE.read_text(), Loader=loader) if isinstance(d, dict)]


def default_pool(addresses: str) -> dict[str, Any]:
    return {
        "apiVersion": IP_ADDRESS_POOL.api_version,
        "kind": IP_ADDRESS_POOL.kind,
        "metadata": {"name": "default", "namespace": NAMESPACE},
        "spec": {"addresses": [addresses]},
    }


def default_l2_advertisement() -> dict[str, Any]:
    """Announce the addresses of every pool on layer 2 (no `ipAddressPools`: all of them,
    as in MetalLB's documented minimal setup)."""
    return {
        "apiVersion": L2_ADVERTISEMENT.api_version,
        "kind": L2_ADVERTISEMENT.kind,
        "metadata": {"name": "default", "namespace": NAMESPACE},
        "spec": {},
    }
