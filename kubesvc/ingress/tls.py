"""TLS for the served Ingresses, as plain values (pure functions, no I/O): which certificate
each host gets, which hosts redirect plain HTTP to HTTPS, what to report, and the HAProxy
files and runtime API steps that serve it.

Rules (ingress-nginx's, where the Ingress API leaves it to the controller):
- `spec.tls[].hosts` names the hosts its `secretName` (a Secret in the Ingress's namespace)
  covers; when two Ingresses name one host, the oldest wins. An entry with no hosts covers
  nothing; one with no `secretName` leaves its hosts on the default certificate;
- a Secret that is missing, not of type `kubernetes.io/tls`, or whose certificate or key
  does not pass certs.secret_pem leaves its hosts on the default certificate, and the
  Ingress gets a Warning Event; the other hosts are served as usual;
- a host named in `spec.tls` answers plain HTTP with a 308 to `https://host/path?query`,
  unless that Ingress (the oldest, if several name it) says `ssl-redirect: "false"`;
  `force-ssl-redirect: "true"` redirects every host of its Ingress, TLS or not. An exact
  host's own setting is used before a wildcard's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubesvc.ingress.certs import BadCertificate, secret_pem

SSL_REDIRECT = ("nginx.ingress.kubernetes.io/ssl-redirect", "kubesvc.io/ssl-redirect")
FORCE_SSL_REDIRECT = (
    "nginx.ingress.kubernetes.io/force-ssl-redirect",
    "kubesvc.io/force-ssl-redirect",
)
MAX_TLS_ENTRIES = 100  # spec.tls entries read per Ingress
MAX_TLS_HOSTS = 1000  # hosts read per entry

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*\Z")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")


@dataclass(frozen=True)
class TLSTable:
    certs: Mapping[str, str] = field(default_factory=dict)  # host -> PEM, valid Secrets only
    redirect: Mapping[str, bool] = field(default_factory=dict)  # host -> plain HTTP redirects
    problems: tuple[tuple[str, str, str], ...] = ()  # (ingress, Event reason, message)
    secrets: frozenset[str] = frozenset()  # ns/name of every Secret a served Ingress names


def _dict(obj: Any, name: str) -> dict[str, Any]:
    value = obj.get(name) if obj.__class__ is dict else None
    return value if value.__class__ is dict else {}  # type: ignore[return-value]


def _list(obj: Any, name: str, limit: int) -> list[Any]:
    value = obj.get(name) if obj.__class__ is dict else None
    return value[:limit] if value.__class__ is list else []  # type: ignore[index]


def _flag(annotations: Mapping[str, Any], names: Sequence[str]) -> bool | None:
    """An annotation's "true"/"false" (the first of `names` set), else None."""
    for name in names:
        value = annotations.get(name)
        if value.__class__ is str and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"  # type: ignore[union-attr]
    return None


def _rule_hosts(ing: Mapping[str, Any]) -> list[str]:
    out = []
    for rule in _list(_dict(ing, "spec"), "rules", 10_000):
        host = rule.get("host") if rule.__class__ is dict else None
        if host.__class__ is str and host and _HOST.match(host):  # type: ignore[arg-type]
            out.append(host)
    return out


def tls_table(ingresses: Iterable[Any], secret: Callable[[str], Any]) -> TLSTable:
    """TLS for `ingresses` (the served ones, oldest first); `secret` looks a Secret up by
    ns/name (None when there is none)."""
    chosen: dict[str, tuple[str, str]] = {}  # host -> (ingress, secret key or "")
    redirect: dict[str, bool] = {}
    forced: list[str] = []
    plain: list[str] = []
    problems: list[tuple[str, str, str]] = []
    for ing in ingresses:
        meta = _dict(ing, "metadata")
        ns, name = meta.get("namespace"), meta.get("name")
        if ns.__class__ is not str or name.__class__ is not str:
            continue
        key = f"{ns}/{name}"
        notes = _dict(meta, "annotations")
        redirects = _flag(notes, SSL_REDIRECT) is not False
        force = _flag(notes, FORCE_SSL_REDIRECT) is True
        hosts = _rule_hosts(ing)
        plain += hosts
        if force:
            forced += hosts
        for i, entry in enumerate(_list(_dict(ing, "spec"), "tls", MAX_TLS_ENTRIES)):
            secret_name = entry.get("secretName") if entry.__class__ is dict else None
            ref = ""
            if secret_name.__class__ is str and secret_name:
                if not _NAME.match(secret_name):  # type: ignore[arg-type]
                    problems.append(
                        (key, "TLSSecretInvalid", f"spec.tls[{i}].secretName is not a name")
                    )
                    continue
                ref = f"{ns}/{secret_name}"
            for host in _list(entry, "hosts", MAX_TLS_HOSTS):
                if host.__class__ is not str or not _HOST.match(host) or len(host) > 253:
                    problems.append(
                        (key, "TLSHostInvalid", f"spec.tls[{i}]: not a valid host: {host!r:.60}")
                    )
                    continue
                if force:
                    forced.append(host)
                if host not in chosen:
                    chosen[host] = (key, ref)
                    redirect[host] = redirects
    for host in forced:
        redirect[host] = True
    for host in plain:
        redirect.setdefault(host, False)  # shadows a wildcard that redirects

    certs: dict[str, str] = {}
    verdicts: dict[str, str | BadCertificate | None] = {}
    for host, (_ing, ref) in chosen.items():
        if not ref:
            continue
        if ref not in verdicts:
            obj = secret(ref)
            try:
                verdicts[ref] = None if obj is None else secret_pem(obj)
            except BadCertificate as e:
                verdicts[ref] = e
        verdict = verdicts[ref]
        if isinstance(verdict, str):
            certs[host] = verdict
    problems += _secret_problems(chosen, verdicts)
    return TLSTable(
        certs=certs,
        redirect=redirect,
        problems=tuple(dict.fromkeys(problems)),
        secrets=frozenset(ref for _ing, ref in chosen.values() if ref),
    )


def _secret_problems(
    chosen: Mapping[str, tuple[str, str]], verdicts: Mapping[str, str | BadCertificate | None]
) -> list[tuple[str, str, str]]:
    """One Warning per (Ingress, Secret) that leaves hosts on the default certificate."""
    hosts: dict[tuple[str, str], list[str]] = {}
    for host, (ing, ref) in chosen.items():
        if ref and not isinstance(verdicts.get(ref), str):
            hosts.setdefault((ing, ref), []).append(host)
    out = []
    for (ing, ref), names in hosts.items():
        verdict = verdicts[ref]
        which = ", ".join(sorted(names)[:5]) + (" ..." if len(names) > 5 else "")
        fallback = f"{which} use the default certificate"
        if verdict is None:
            out.append((ing, "SecretNotFound", f"Secret {ref} not found: {fallback}"))
        else:
            why = f"Secret {ref} is not a usable TLS Secret ({verdict}): {fallback}"
            out.append((ing, "TLSSecretInvalid", why))
    return out


# -- HAProxy --------------------------------------------------------------------------------
def cert_file(certs_dir: str, host: str) -> str:
    """One file per host: a host moves between Secrets, or comes and goes, with one runtime
    transaction on its own file and crt-list line. Hosts hold no "_", so `*` -> `_` is
    unique."""
    return f"{certs_dir}/{host.replace('*', '_')}.pem"


def host_of(path: str) -> str:
    """The host a certificate file serves (cert_file, back)."""
    return path.rsplit("/", 1)[-1].removesuffix(".pem").replace("_", "*")


def crt_list(files: Iterable[str]) -> str:
    """HAProxy's crt-list: each host's file -> its host (as SNI filter); any other name gets
    the bind line's first certificate, the default one."""
    return "".join(f"{path} {host_of(path)}\n" for path in files)


def cert_files(table: TLSTable, certs_dir: str) -> dict[str, str]:
    """path -> PEM of every host's certificate file."""
    return {cert_file(certs_dir, h): pem for h, pem in sorted(table.certs.items())}


def redirect_map(table: TLSTable) -> str:
    """host -> 1 (redirect) or 0: looked up with the exact host, then its wildcard. A `*`
    entry says some wildcard host is in the map, so a request looks its wildcard up only
    then (no per-request rewrite of the host when no wildcard host has TLS)."""
    lines = [f"{h} {int(on)}\n" for h, on in sorted(table.redirect.items())]
    if any(h.startswith("*.") for h in table.redirect):
        lines.insert(0, "* 1\n")
    return "".join(lines)


@dataclass(frozen=True)
class Step:
    """One runtime API command; `payload` follows it (`<<`, then an empty line)."""

    command: str
    payload: str = ""
    expect: str = ""  # text the answer holds when the command worked


def cert_steps(old: Mapping[str, str], new: Mapping[str, str], crt_list_path: str) -> list[Step]:
    """Runtime API steps from certificate files `old` to `new` (path -> PEM), each file a
    transaction of its own: a new file is loaded before its crt-list line is added; a line
    is deleted before its file."""
    steps: list[Step] = []
    for path, pem in new.items():
        if old.get(path) == pem:
            continue
        if path not in old:
            steps.append(Step(f"new ssl cert {path}", expect="New empty certificate"))
        steps.append(Step(f"set ssl cert {path}", pem, expect="Transaction "))
        steps.append(Step(f"commit ssl cert {path}", expect="Success!"))
        if path not in old:
            line = crt_list([path])
            steps.append(Step(f"add ssl crt-list {crt_list_path}", line, expect="Success!"))
    for path in old:
        if path not in new:
            steps.append(Step(f"del ssl crt-list {crt_list_path} {path}", expect="deleted"))
            steps.append(Step(f"del ssl cert {path}", expect="deleted"))
    return steps
