"""The names a pod's resolver tries for a name, as glibc does with its resolv.conf (pure).

glibc's rules (res_search): a name ending in a dot is tried as it is, alone. A name with
at least `ndots` dots is tried as it is first, then with each search domain; one with
fewer is tried with each search domain first, then as it is. The first answer that is not
NXDOMAIN (or an empty answer) ends the search.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_SEARCH = 32  # glibc keeps at most 32 search domains (MAXDNSRCH since 2.26)
MAX_NAME = 253


@dataclass(frozen=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    ndots: int = 1


def parse(text: str) -> ResolvConf:
    """resolv.conf's nameserver, search (the last one wins, as in glibc) and ndots."""
    servers: list[str] = []
    search: tuple[str, ...] = ()
    ndots = 1
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        key, args = fields[0], fields[1:]
        if key == "nameserver" and args and len(servers) < 3:
            servers.append(args[0])
        elif key in ("search", "domain"):
            search = tuple(args[:MAX_SEARCH])
        elif key == "options":
            for opt in args:
                if opt.startswith("ndots:") and opt[6:].isdigit():
                    ndots = min(int(opt[6:]), 15)  # glibc caps ndots at 15
    return ResolvConf(tuple(servers), search, ndots)


def candidates(name: str, conf: ResolvConf) -> list[str]:
    """The absolute names tried for `name`, in order, each with its trailing dot."""
    name = name.strip()
    if not name or name == ".":
        return []
    if name.endswith("."):
        return [name]
    as_is = name + "."
    searched = [f"{name}.{d.strip('.')}." for d in conf.search if d.strip(".")]
    searched = [n for n in searched if len(n) <= MAX_NAME + 1]
    if name.count(".") >= conf.ndots:
        return [as_is, *[n for n in searched if n != as_is]]
    return [*searched, *([as_is] if as_is not in searched else [])]
