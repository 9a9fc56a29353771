"""Several hosts on one machine for a test: Linux network namespaces joined by veth pairs.

:func:`hosts` makes one namespace per host name plus a hub namespace holding
a bridge; each host gets a veth pair whose one end is its ``eth0`` (an
address on a private /24 of its own) and whose other end is attached to the
hub's bridge. Everything is made inside namespaces the test created, so no
traffic and no interface reaches the machine's own network, and deleting the
namespaces at the end (also when the test fails) deletes every veth with them.

Where namespaces cannot be made (not root, no ``ip``, a container without
CAP_SYS_ADMIN) the caller skips with the reason :func:`unavailable` gives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# A private (RFC 1918) subnet: it exists only inside the namespaces made here.
SUBNET = "10.230.30"


@dataclass(frozen=True)
class Host:
    """One namespace: its name, its address on the test subnet, and how to run in it."""

    namespace: str
    address: str

    def command(self, *args: str) -> list[str]:
        """``args`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *args]

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.command(*args), **kwargs)

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"sbcntr-probe-{os.getpid()}"
    made = subprocess.run(
        ["ip", "netns", "add", probe], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        return f"`ip netns add` refused: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = f"ip {' '.join(args)}: {result.stderr.strip()}"
        raise RuntimeError(msg)


@contextmanager
def hosts(*names: str) -> Iterator[dict[str, Host]]:
    """Namespaces ``names`` on one bridged subnet (``SUBNET``.1, .2, ... in order)."""
    prefix = f"sb{os.getpid() % 100000}"  # unique per test process; namespace names <= 15
    hub = f"{prefix}-hub"
    made: list[str] = []
    try:
        _ip("netns", "add", hub)
        made.append(hub)
        _ip("-n", hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", hub, "link", "set", "br0", "up")
        found = {}
        for number, name in enumerate(names, 1):
            namespace = f"{prefix}-{name}"
            _ip("netns", "add", namespace)
            made.append(namespace)
            port = f"p{number}"
            # the pair's other end is the host's eth0, made inside its namespace
            veth = ("type", "veth", "peer", "name", "eth0", "netns", namespace)
            _ip("-n", hub, "link", "add", port, *veth)
            _ip("-n", hub, "link", "set", port, "master", "br0", "up")
            address = f"{SUBNET}.{number}"
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            found[name] = Host(namespace, address)
        yield found
    finally:
        for namespace in reversed(made):
            subprocess.run(["ip", "netns", "del", namespace], check=False)
