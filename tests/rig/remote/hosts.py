"""Stand-ins for several hosts in the tests: configs with TCP endpoints, `rig worker` processes,
and network namespaces joined by a veth pair (imported, not collected)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CAMERAS = ("cam_left", "cam_right", "cam_front", "cam_top")
SHARED_POSE = "pose:" + "+".join(CAMERAS)
# The roles the tests move off the console: everything a `rig worker` can take.
ALL_REMOTE_ROLES = ("writer", *(f"camera:{c}" for c in CAMERAS), SHARED_POSE, "triangulator")


def free_ports(count: int, address: str = "127.0.0.1") -> list[int]:
    """``count`` TCP ports free on ``address`` now (loopback: checked by binding them)."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 60000)
        if port in ports:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((address, port))
            except OSError:
                continue
        ports.append(port)
    return ports


def host_tables(
    roles: Sequence[str],
    console_address: str = "127.0.0.1",
    worker_address: str = "127.0.0.1",
    extra_remote: str = "",
) -> str:
    """``[endpoints]`` and ``[remote]`` for a rig whose ``roles`` run at ``worker_address``: each
    endpoint on the address of the host that binds it, each on its own port."""
    console_ports = free_ports(4, console_address)
    # A namespace's address cannot be probed from here; nothing else listens there anyway.
    worker_ports = free_ports(2 + len(CAMERAS), "127.0.0.1")
    control, trigger_line, jump_input, replay_credit = console_ports
    record, poses, *live = worker_ports
    lines = [
        "[endpoints]",
        f'control = "tcp://{console_address}:{control}"',
        f'trigger_line = "tcp://{console_address}:{trigger_line}"',
        f'jump_input = "tcp://{console_address}:{jump_input}"',
        f'replay_credit = "tcp://{console_address}:{replay_credit}"',
        f'record = "tcp://{worker_address}:{record}"',
        f'poses = "tcp://{worker_address}:{poses}"',
        "",
        "[endpoints.live_frames]",
        *(f'{c} = "tcp://{worker_address}:{port}"' for c, port in zip(CAMERAS, live, strict=True)),
        "",
        "[remote]",
        f"roles = {json.dumps(list(roles))}",
        "worker_wait_s = 120",
        extra_remote,
    ]
    return "\n".join(lines) + "\n"


@dataclass
class WorkerHost:
    role: str
    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@contextlib.contextmanager
def worker_hosts(
    config: Path,
    roles: Sequence[str],
    folder: Path,
    trials: int = 1,
    namespace: str = "",
) -> Iterator[list[WorkerHost]]:
    """`rig worker --config CONFIG --role ROLE --trials N` for each role (inside network
    namespace ``namespace`` if given), stopped with SIGTERM on the way out."""
    hosts: list[WorkerHost] = []
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    try:
        for role in roles:
            log = folder / f"worker_{role.replace(':', '_').replace('+', '_')}.log"
            with log.open("w") as out:
                process = subprocess.Popen(
                    [
                        *prefix,
                        *(sys.executable, "-m", "rig.cli", "worker", "--config", str(config)),
                        *("--role", role, "--trials", str(trials)),
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    text=True,
                    cwd=folder,
                )
            hosts.append(WorkerHost(role, process, log))
        yield hosts
    finally:
        for host in hosts:
            if host.process.poll() is None:
                host.process.terminate()
        for host in hosts:
            try:
                host.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                host.process.kill()
                host.process.wait()


@dataclass(frozen=True)
class VethNamespace:
    """A network namespace joined to this one by a veth pair: this end ``console_address``, the
    namespace's end ``worker_address``."""

    name: str
    console_address: str
    worker_address: str


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)


@contextlib.contextmanager
def veth_namespace() -> Iterator[VethNamespace | str]:
    """A namespace with a veth pair to this one, or (when this machine does not allow it: no
    ``ip`` command, no CAP_NET_ADMIN) the reason as a string."""
    tag = f"{os.getpid() % 100000}"
    name = f"jumprig{tag}"
    subnet = 10 + os.getpid() % 200
    here, there = f"veth{tag}a", f"veth{tag}b"
    console_address, worker_address = f"10.231.{subnet}.1", f"10.231.{subnet}.2"
    try:
        created = _ip("netns", "add", name)
    except FileNotFoundError:
        yield "no `ip` command (Debian's iproute2)"
        return
    if created.returncode != 0:
        yield f"cannot make a network namespace: {created.stderr.strip()}"
        return
    try:
        steps = [
            ("link", "add", here, "type", "veth", "peer", "name", there),
            ("link", "set", there, "netns", name),
            ("addr", "add", f"{console_address}/24", "dev", here),
            ("link", "set", here, "up"),
            ("-n", name, "addr", "add", f"{worker_address}/24", "dev", there),
            ("-n", name, "link", "set", there, "up"),
            ("-n", name, "link", "set", "lo", "up"),
        ]
        for step in steps:
            done = _ip(*step)
            if done.returncode != 0:
                yield f"`ip {' '.join(step)}` failed: {done.stderr.strip()}"
                return
        yield VethNamespace(name, console_address, worker_address)
    finally:
        _ip("link", "del", here)
        _ip("netns", "del", name)
