"""What a container runs. kubesvc runs containers as host processes, so a container either
names a command (run from the host filesystem) or uses one of the well-known test images
built in here as Python programs.

`command`/`args` follow upstream: `command` replaces the image's ENTRYPOINT, `args`
replace its CMD; with `command` but no `args` the CMD is not used.

Kept light on imports: every built-in image starts by importing this package.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "BUILT_IN",
    "ImageRef",
    "InvalidReference",
    "Resolved",
    "parse_image",
    "resolve",
]

DEFAULT_DOMAIN = "docker.io"
PACKAGE = __name__

BUILT_IN = (
    "agnhost",
    "kubia",
    "nginx",
    "hashicorp/http-echo",
    "pause",
    "busybox",
    "alpine",
    "curlimages/curl",
    "coredns/coredns",
    "kubesvc/ingress-controller",
    "python",
    "k8s.gcr.io/ingressconformance/echoserver",
)


@dataclass(frozen=True)
class Resolved:
    argv: list[str] | None
    reason: str = ""
    message: str = ""
    default_ports: list[int] = field(default_factory=list)


# ---------------------------------------------------------------- image references


class InvalidReference(ValueError):
    pass


@dataclass(frozen=True)
class ImageRef:
    domain: str  # docker.io, registry.k8s.io, localhost:5000
    path: str  # library/nginx, e2e-test-images/agnhost
    tag: str  # "" when the reference has only a digest or nothing
    digest: str

    @property
    def name(self) -> str:
        """The last path component: agnhost, nginx, kubia-unhealthy."""
        return self.path.rsplit("/", 1)[-1]


_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")


def parse_image(ref: str) -> ImageRef:
    """Parse `[host[:port]/]path[:tag][@digest]` the way the container runtime does."""
    rest, _, digest = ref.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        raise InvalidReference("invalid reference format")
    tag = ""
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidReference("invalid reference format")
    if not rest or len(rest) > 255:
        raise InvalidReference("invalid reference format")
    domain, path = _split_domain(rest)
    if not _DOMAIN.fullmatch(domain):
        raise InvalidReference("invalid reference format")
    if not _PATH.fullmatch(path):
        if _PATH.fullmatch(path.lower()):
            raise InvalidReference(
                f"invalid reference format: repository name ({path}) must be lowercase"
            )
        raise InvalidReference("invalid reference format")
    if not tag and not digest:
        tag = "latest"
    return ImageRef(domain=domain, path=path, tag=tag, digest=digest)


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, remainder = name.partition("/")
    if not sep or (
        "." not in first and ":" not in first and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain = first
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = f"library/{remainder}"
    return domain, remainder


# ---------------------------------------------------------------- built-in images


def _module(name: str) -> list[str]:
    return [sys.executable, "-m", f"{PACKAGE}.{name}"]


def _flag_int(args: list[str], names: tuple[str, ...], default: int) -> int:
    """The value of an int flag (`--name=N`, `--name N`, `-name=N`), for the port hints."""
    for i, arg in enumerate(args):
        key, eq, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or key not in names:
            continue
        if not eq:
            value = args[i + 1] if i + 1 < len(args) else ""
        try:
            return int(value)
        except ValueError:
            return default
    return default


def agnhost_ports(args: list[str]) -> list[int]:
    sub = args[0] if args else ""
    rest = args[1:]
    if sub == "netexec":
        http = _flag_int(rest, ("http-port",), 8080)
        udp = _flag_int(rest, ("udp-port",), 8081)
        return [http] + ([udp] if udp != -1 else [])
    if sub == "serve-hostname":
        return [_flag_int(rest, ("port",), 9376)]
    if sub == "liveness":
        return [8080]
    if sub == "test-webserver":
        return [_flag_int(rest, ("port",), 80)]
    return []


def _agnhost(ref: ImageRef, args: list[str], argv0: str | None = None) -> Resolved:
    args = args or ["pause"]  # the image's CMD
    prefix = [f"--kubesvc-argv0={argv0}"] if argv0 else []
    return Resolved(_module("agnhost") + prefix + args, default_ports=agnhost_ports(args))


def _pause(ref: ImageRef, args: list[str]) -> Resolved:
    return Resolved(_module("pause") + args)


def kubia_variant(ref: ImageRef) -> str:
    if ref.name == "kubia-unhealthy":
        return "unhealthy"
    if ref.tag in ("v1", "v2", "v3", "v4"):
        return ref.tag
    return "default"


def _kubia(ref: ImageRef, args: list[str]) -> Resolved:
    # ENTRYPOINT ["node", "app.js"]: extra args reach app.js, which ignores them.
    return Resolved([*_module("kubia"), f"--variant={kubia_variant(ref)}"], default_ports=[8080])


def nginx_version(tag: str) -> str:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", tag)
    if m is None:
        return "1.27.3"
    return f"{m.group(1)}.{m.group(2)}.{m.group(3) or 0}"


def _nginx(ref: ImageRef, args: list[str]) -> Resolved:
    # ENTRYPOINT ["/docker-entrypoint.sh"], CMD ["nginx", "-g", "daemon off;"]; the
    # entrypoint runs anything that is not nginx as given.
    args = args or ["nginx", "-g", "daemon off;"]
    if args[0] not in ("nginx", "nginx-debug"):
        return Resolved(list(args))
    return _nginx_server(ref, args)


def _nginx_server(ref: ImageRef, args: list[str]) -> Resolved:
    port = 8080 if ref.name == "nginx-unprivileged" else 80
    extra = [f"--kubesvc-port={port}"] if port != 80 else []
    argv = [*_module("nginx"), f"--kubesvc-version={nginx_version(ref.tag)}", *extra, *args]
    return Resolved(argv, default_ports=[port])


def _http_echo(ref: ImageRef, args: list[str]) -> Resolved:
    port = 5678
    for arg in args:
        key, eq, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and key == "listen" and eq:
            tail = value.rpartition(":")[2]
            port = int(tail) if tail.isdigit() else port
    return Resolved(_module("http_echo") + args, default_ports=[port])


# The image's CMD where it has no ENTRYPOINT: args replace it and run as the command.
SHELL_IMAGES: dict[str, list[str]] = {
    "busybox": ["sh"],
    "alpine": ["/bin/sh"],
    "ubuntu": ["/bin/bash"],
    "debian": ["bash"],
    "centos": ["/bin/bash"],
    "fedora": ["/bin/bash"],
}


def _shell(ref: ImageRef, args: list[str]) -> Resolved:
    return Resolved(list(args or SHELL_IMAGES[ref.name]))


# curlimages/curl's /entrypoint.sh: a leading flag, or a first word that is no command,
# means arguments for curl.
CURL_ENTRYPOINT = (
    'if [ "${1#-}" != "$1" ] || [ -z "$(command -v "$1")" ]; then set -- curl "$@"; fi; exec "$@"'
)


def _curl(ref: ImageRef, args: list[str]) -> Resolved:
    if not args:
        return Resolved(["curl"])
    return Resolved(["sh", "-c", CURL_ENTRYPOINT, "/entrypoint.sh", *args])


def _coredns(ref: ImageRef, args: list[str]) -> Resolved:
    """Cluster DNS: kubesvc's own server, reading the cluster through the in-pod
    service account. CoreDNS's `-conf FILE` has no meaning here and is dropped."""
    rest, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-conf", "--conf"):
            skip = True
            continue
        if a.startswith(("-conf=", "--conf=")):
            continue
        rest.append(a)
    argv = [sys.executable, "-m", "kubesvc.cli.main", "dns", "--in-cluster", *rest]
    return Resolved(argv, default_ports=[53, 9153])


def _ingress_controller(ref: ImageRef, args: list[str]) -> Resolved:
    """kubesvc's ingress controller (HAProxy driven by the cluster, docs/ingress.md),
    reading the cluster through the in-pod service account."""
    argv = [sys.executable, "-m", "kubesvc.cli.main", "ingress-controller", "--in-cluster"]
    return Resolved([*argv, *args], default_ports=[80, 443, 10254, 10255])


def _echoserver(ref: ImageRef, args: list[str]) -> Resolved:
    # ENTRYPOINT ["/echoserver"]; it takes no arguments, its env says everything
    return Resolved([*_module("echoserver"), *args], default_ports=[3000])


def host_python() -> str:
    """The host's own interpreter (not kubesvc's virtual environment): what the official
    `python` image offers is a plain Python with its standard library. The real binary, not
    a wrapper found on the PATH (pyenv's shims are shell scripts in /root): pods see the
    installation it belongs to, read-only, and nothing else of the host."""
    return os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)


def _python(ref: ImageRef, args: list[str]) -> Resolved:
    # CMD ["python3"], no ENTRYPOINT: args are the command
    if not args:
        return Resolved([host_python()])
    return _with_command("python", ref, args[:1], args[1:]) or Resolved(list(args))


Handler = Callable[[ImageRef, list[str]], Resolved]

HANDLERS: dict[str, Handler] = {
    "agnhost": _agnhost,
    "pause": _pause,
    "kubia": _kubia,
    "nginx": _nginx,
    "http-echo": _http_echo,
    "shell": _shell,
    "curl": _curl,
    "coredns": _coredns,
    "ingress-controller": _ingress_controller,
    "python": _python,
    "echoserver": _echoserver,
}


def builtin_kind(ref: ImageRef) -> str | None:
    name = ref.name
    if name == "agnhost":
        return "agnhost"
    if name in ("pause", "pause-amd64", "pause-arm64"):
        return "pause"
    if name.startswith("kubia"):
        return "kubia"
    if name in ("nginx", "nginx-unprivileged"):
        return "nginx"
    if name == "http-echo":
        return "http-echo"
    if name in SHELL_IMAGES:
        return "shell"
    if ref.path == "curlimages/curl" or name == "curl":
        return "curl"
    if name == "coredns":
        return "coredns"
    if name == "python":
        return "python"
    if ref.path == "kubesvc/ingress-controller":
        return "ingress-controller"
    if ref.path in ECHOSERVER_PATHS:
        return "echoserver"
    return None


# ingress-controller-conformance's echoserver, by the names its releases and staging use
ECHOSERVER_PATHS = ("ingressconformance/echoserver", "k8s-staging-ingressconformance/echoserver")


def _with_command(
    kind: str | None, ref: ImageRef, command: list[str], args: list[str]
) -> Resolved | None:
    """A command naming the image's own binary (`/agnhost`, `/pause`, `nginx`, ...) runs the
    built-in program; any other command runs from the host filesystem."""
    exe, rest = command[0], [*command[1:], *args]
    base = exe.rsplit("/", 1)[-1]
    if kind == "agnhost" and base in ("agnhost", "agnhost-2"):
        return _agnhost(ref, rest, argv0=exe) if rest else _help(exe)
    if kind == "pause" and exe == "/pause":
        return _pause(ref, rest)
    if kind == "http-echo" and base == "http-echo":
        return _http_echo(ref, rest)
    if kind == "kubia" and exe == "node" and rest[:1] == ["app.js"]:
        return _kubia(ref, rest[1:])
    if (
        kind == "nginx"
        and base in ("nginx", "nginx-debug")
        and exe
        in (
            "nginx",
            "nginx-debug",
            "/usr/sbin/nginx",
            "/usr/sbin/nginx-debug",
        )
    ):
        return _nginx_server(ref, [exe, *rest])
    if kind == "nginx" and exe == "/docker-entrypoint.sh":
        return _nginx(ref, rest)
    if kind == "curl" and exe == "/entrypoint.sh":
        return _curl(ref, rest)
    if kind == "echoserver" and exe == "/echoserver":
        return _echoserver(ref, rest)
    if kind == "python" and _PYTHON_EXE.fullmatch(base):
        # the image's `python` is its python3, which the host may not call `python`
        return Resolved([host_python(), *rest])
    return None


_PYTHON_EXE = re.compile(r"python(3(\.\d+)?)?")


def _help(exe: str) -> Resolved:
    # agnhost with no subcommand prints its help and exits 0.
    return Resolved([*_module("agnhost"), f"--kubesvc-argv0={exe}", "--help"])


def not_built_in(image: str) -> Resolved:
    return Resolved(
        None,
        reason="ErrImagePull",
        message=(
            f'Failed to pull image "{image}": kubesvc runs containers as host processes: '
            f'image "{image}" is not built in; give the container a command (it runs from '
            "the host filesystem) or use one of: " + ", ".join(BUILT_IN)
        ),
    )


def resolve(image: str, command: list[str] | None, args: list[str] | None) -> Resolved:
    """What to exec for a container, or why it cannot run (reason/message as the kubelet
    reports a failed image pull)."""
    command = list(command or [])
    args = list(args or [])
    try:
        ref = parse_image(image)
    except InvalidReference as exc:
        return Resolved(
            None,
            reason="InvalidImageName",
            message=(
                f'Failed to apply default image tag "{image}": couldn\'t parse image name '
                f'"{image}": {exc}'
            ),
        )
    kind = builtin_kind(ref)
    if command:
        mapped = _with_command(kind, ref, command, args)
        return mapped if mapped is not None else Resolved([*command, *args])
    if kind is None:
        return not_built_in(image)
    return HANDLERS[kind](ref, args)
