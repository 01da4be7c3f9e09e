"""A container's effective securityContext, as upstream merges pod and container fields,
and the setpriv command line that applies it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubesvc.node import security

POD = "web_default(1234)"


def sec(pod: dict[str, Any] | None = None, ctr: dict[str, Any] | None = None) -> security.Security:
    spec = {"securityContext": pod} if pod is not None else {}
    return security.container_security(spec, {"securityContext": ctr} if ctr else {})


def test_the_default_is_root_with_dockers_capabilities_and_no_new_privileges() -> None:
    s = sec()
    assert (s.uid, s.gid, s.groups, s.caps, s.no_new_privs) == (
        0,
        0,
        (),
        security.DEFAULT_CAPS,
        True,
    )
    assert len(security.DEFAULT_CAPS) == 14
    argv = security.privileges_argv(s)
    assert argv[:4] == ["setpriv", "--reuid=0", "--regid=0", "--clear-groups"]
    assert "--no-new-privs" in argv and argv[-1] == "--"
    bounding = next(a for a in argv if a.startswith("--bounding-set="))
    assert bounding.startswith("--bounding-set=-all,+chown,+dac_override,")
    assert bounding.count(",+") == 14


def test_container_fields_override_the_pods() -> None:
    s = sec(
        {"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4, 5], "fsGroup": 2000},
        {"runAsUser": 2000},
    )
    assert (s.uid, s.gid, s.groups) == (2000, 3000, (4, 5, 2000))
    assert "--groups=4,5,2000" in security.privileges_argv(s)


def test_capabilities_drop_then_add() -> None:
    s = sec(ctr={"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "CAP_SYS_TIME"]}})
    assert s.caps == {"net_admin", "sys_time"}
    assert "--bounding-set=-all,+net_admin,+sys_time" in security.privileges_argv(s)
    assert sec(ctr={"capabilities": {"drop": ["NET_RAW"]}}).caps == security.DEFAULT_CAPS - {
        "net_raw"
    }
    with pytest.raises(security.ConfigError, match='unknown capability "BOGUS" to add'):
        sec(ctr={"capabilities": {"add": ["BOGUS"]}})


def test_escalation_and_privileged() -> None:
    assert not sec(ctr={"allowPrivilegeEscalation": True}).no_new_privs
    assert not sec(ctr={"capabilities": {"add": ["SYS_ADMIN"]}}).no_new_privs
    p = sec(ctr={"privileged": True})
    assert p.privileged and not p.no_new_privs
    argv = security.privileges_argv(p)
    assert not any(a.startswith("--bounding-set") for a in argv) and "--no-new-privs" not in argv


def test_read_only_root_remounts_in_a_namespace_of_its_own() -> None:
    argv = security.privileges_argv(sec(ctr={"readOnlyRootFilesystem": True}))
    assert argv[:3] == ["unshare", "--mount", "--propagation=private"]
    assert argv.index("setpriv") > argv.index("unshare")


def test_run_as_non_root_refuses_root_with_upstreams_words() -> None:
    assert security.non_root_error(sec({"runAsNonRoot": True}), POD, "c") == (
        'container has runAsNonRoot and image will run as root (pod: "web_default(1234)", '
        "container: c)"
    )
    assert security.non_root_error(sec({"runAsNonRoot": True, "runAsUser": 0}), POD, "c") == (
        'container\'s runAsUser breaks non-root policy (pod: "web_default(1234)", container: c)'
    )
    assert security.non_root_error(sec({"runAsNonRoot": True, "runAsUser": 1}), POD, "c") is None
    assert security.non_root_error(sec({"runAsUser": 0}), POD, "c") is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = st.sampled_from(
    [
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "supplementalGroups",
        "fsGroup",
        "capabilities",
        "privileged",
        "allowPrivilegeEscalation",
        "readOnlyRootFilesystem",
    ]
)


@given(pod=st.dictionaries(FIELDS, JSON) | JSON, ctr=st.dictionaries(FIELDS, JSON) | JSON)
def test_any_stored_context_gives_a_command_line_or_a_config_error(pod: Any, ctr: Any) -> None:
    try:
        s = security.container_security({"securityContext": pod}, {"securityContext": ctr})
    except security.ConfigError:
        return
    argv = security.privileges_argv(s)
    assert all(isinstance(a, str) for a in argv) and argv[-1] == "--"
    assert 0 <= s.uid < 2**31 and 0 <= s.gid < 2**31
