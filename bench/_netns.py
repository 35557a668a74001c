"""Network namespaces and socket-holding processes for benchmarks and real-kernel tests.

Why this exists: the socket benchmark needs 100k+ real TCP sockets in a namespace it owns, held by several
processes (the per-process open-file limit is 20,000), and it must leave nothing behind even when interrupted.

Shape: a *server* namespace and a *client* namespace joined by one veth pair. The server listens on a few
ip:port destinations with a huge backlog and never accepts, so the server side costs no file descriptors: the
connections wait, ESTABLISHED, in the accept queue. Client processes connect and hold their ends. A separate
"time-wait" destination is accepted and closed by the server after the client closed first, so the *client*
side ends in TIME_WAIT.

Cleanup, in layers: every child is started with PR_SET_PDEATHSIG (it dies with the parent) and also exits
on EOF of its stdin; `NetnsLab.close()` kills children by pid and deletes the namespaces (which removes the
veth); namespaces are named `ndbench-<tag>-<role>-<pid>` and `remove_stale_namespaces()` deletes those whose
creator pid is gone (after a SIGKILL, the one thing no handler can catch).

The `serve` / `hold-clients` subcommands are the child roles; start them through `NetnsLab.spawn`.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

NAME_PREFIX = "ndbench-"
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: make the kernel send SIGKILL to this child when its parent dies (survives execve)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def remove_stale_namespaces() -> list[str]:
    """Delete `ndbench-*-<pid>` namespaces whose creating process no longer exists."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    removed = []
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(NAME_PREFIX):
            continue
        pid_text = name.rsplit("-", 1)[-1]
        if pid_text.isdigit() and not os.path.exists(f"/proc/{pid_text}"):
            subprocess.run(["ip", "netns", "del", name], check=False, stderr=subprocess.DEVNULL)
            removed.append(name)
    return removed


def write_netns_sysctl(namespace: str, name: str, value: str) -> None:
    """Set a per-namespace sysctl (net.*) inside `namespace`."""
    _run("ip", "netns", "exec", namespace, "sysctl", "-q", "-w", f"{name}={value}")


@dataclass
class NetnsLab:
    """A server and a client namespace joined by veth, plus the child processes that hold sockets in them.

    Use as a context manager; `close()` is idempotent and also runs on SIGTERM/SIGINT via the caller's
    try/finally (see `install_signal_cleanup`).
    """

    tag: str = "lab"
    server_ips: tuple[str, ...] = ("10.77.0.1", "10.77.1.1")
    client_ip: str = "10.77.0.2"
    server_ip6: str = "fd77::1"
    client_ip6: str = "fd77::2"
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    @property
    def server_ns(self) -> str:
        return f"{NAME_PREFIX}{self.tag}-srv-{os.getpid()}"

    @property
    def client_ns(self) -> str:
        return f"{NAME_PREFIX}{self.tag}-cli-{os.getpid()}"

    def __enter__(self) -> NetnsLab:
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def setup(self) -> None:
        remove_stale_namespaces()
        for ns in (self.server_ns, self.client_ns):
            _run("ip", "netns", "add", ns)
            self.created.append(ns)
        veth_srv, veth_cli = f"ndb{os.getpid() % 100000}s", f"ndb{os.getpid() % 100000}c"
        _run("ip", "link", "add", veth_srv, "netns", self.server_ns, "type", "veth", "peer", "name", veth_cli,
             "netns", self.client_ns)  # fmt: skip
        for ns, dev in ((self.server_ns, veth_srv), (self.client_ns, veth_cli)):
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "link", "set", dev, "up")
        for ip in self.server_ips:
            _run("ip", "-n", self.server_ns, "addr", "add", f"{ip}/24", "dev", veth_srv)
        _run("ip", "-n", self.server_ns, "addr", "add", f"{self.server_ip6}/64", "dev", veth_srv, "nodad")
        _run("ip", "-n", self.client_ns, "addr", "add", f"{self.client_ip}/24", "dev", veth_cli)
        _run("ip", "-n", self.client_ns, "addr", "add", f"{self.client_ip6}/64", "dev", veth_cli, "nodad")
        for ip in self.server_ips[1:]:
            subnet = ip.rsplit(".", 1)[0] + ".0/24"
            _run("ip", "-n", self.client_ns, "route", "add", subnet, "dev", veth_cli)
        write_netns_sysctl(self.server_ns, "net.core.somaxconn", "1000000")
        write_netns_sysctl(self.server_ns, "net.ipv4.tcp_max_syn_backlog", "65536")
        write_netns_sysctl(self.client_ns, "net.ipv4.ip_local_port_range", "1024 65535")
        write_netns_sysctl(self.client_ns, "net.ipv4.tcp_max_tw_buckets", "1000000")

    def spawn(self, namespace: str, *role_args: str, wait: bool = True) -> subprocess.Popen[bytes]:
        """Start a child role of this module inside `namespace`; with `wait`, return once it is ready."""
        argv = ["ip", "netns", "exec", namespace, sys.executable, os.path.abspath(__file__), *role_args]
        child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=_die_with_parent)
        self.children.append(child)
        if wait:
            self.wait_ready([child])
        return child

    @staticmethod
    def wait_ready(children: Sequence[subprocess.Popen[bytes]]) -> None:
        """Wait until each child printed "ready" (its sockets are all open)."""
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline().decode().strip()
            if line != "ready":
                raise RuntimeError(f"child {child.args!r} failed (exit {child.poll()}): {line!r}")

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.children.clear()
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], check=False, stderr=subprocess.DEVNULL)
        self.created.clear()


def install_signal_cleanup() -> None:
    """Turn SIGTERM/SIGHUP/SIGINT into exceptions so `with NetnsLab()` / finally blocks run on `kill` too."""

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (`cmd &`)


# ---------------------------------------------------------------- child roles (run inside a namespace)


def _raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _parse_destination(text: str) -> tuple[int, tuple[str, int]]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, int(port))


def _wait_for_parent_eof() -> None:
    """Block until stdin closes (the parent exited or closed the pipe)."""
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([sys.stdin], [], [])
        if readable and not os.read(sys.stdin.fileno(), 4096):
            return


def _serve(listens: Sequence[str], accept_and_close: Sequence[str]) -> None:
    """Listen on `listens` and never accept; on `accept_and_close` accept, await the peer's FIN, close."""
    _raise_nofile()
    held = []
    for text in [*listens, *accept_and_close]:
        family, address = _parse_destination(text)
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(1_000_000)
        held.append(listener)
        if text in accept_and_close:
            threading.Thread(target=_accept_wait_close, args=(listener,), daemon=True).start()
    _wait_for_parent_eof()


def _accept_wait_close(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        try:
            conn.settimeout(5)
            while conn.recv(4096):
                pass
        except OSError:
            pass
        conn.close()


def _hold_clients(destinations: Sequence[str], count: int, close_first: bool) -> None:
    """Open `count` connections round-robin over `destinations`; hold them, or close each at once (client
    closes first, so the client side ends in TIME_WAIT once the server closes too)."""
    _raise_nofile()
    targets = [_parse_destination(text) for text in destinations]
    held = []
    for i in range(count):
        family, address = targets[i % len(targets)]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.connect(address)
        if close_first:
            sock.close()
        else:
            held.append(sock)
    _wait_for_parent_eof()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    roles = parser.add_subparsers(dest="role", required=True)
    serve = roles.add_parser("serve")
    serve.add_argument("--listen", action="append", default=[])
    serve.add_argument("--accept-and-close", action="append", default=[])
    hold = roles.add_parser("hold-clients")
    hold.add_argument("--dest", action="append", required=True)
    hold.add_argument("--count", type=int, required=True)
    hold.add_argument("--close-first", action="store_true")
    args = parser.parse_args(argv)
    if args.role == "serve":
        _serve(args.listen, args.accept_and_close)
    else:
        _hold_clients(args.dest, args.count, args.close_first)


if __name__ == "__main__":
    main()
