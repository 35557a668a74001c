"""Network incidents made for real in namespaces, one context manager per scenario.

Each scenario builds its namespaces, starts the processes that make the problem, waits
until the problem is visible in the kernel (socket states, counters), and yields a
`ScenarioRun` while it keeps happening; on exit every process and namespace is removed.
`run.namespace` is where the problem shows, so that is where netdoctor must run:

    with retransmit_storm() as run:
        run_in(run.namespace, netdoctor_argv("diagnose", "--format", "json", "--interval", "2"))

The same functions drive tests/test_real_scenarios.py (diagnose while it happens) and
tests/fixtures/make_scenarios.py (capture it into tests/fixtures/proc/<scenario>/).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.netns import (
    Namespace,
    NetnsError,
    add_random_drop,
    dropped_packets,
    netns_pair,
    run_in,
    run_worker,
    start_worker,
    sysctl,
    workers,
)

# Distinct process names (comm, at most 15 bytes) so a diagnosis naming them is unambiguous.
LEAKY_SERVER = "nd-leaky-srv"
CLOSING_SERVER = "nd-closing-srv"
NON_ACCEPTING_SERVER = "nd-noaccept"
UDP_SINK = "nd-udp-sink"
PORT_HOLDER = "nd-port-holder"


@dataclass
class ScenarioRun:
    """A scenario while it happens: where to look, and the facts a diagnosis must name."""

    name: str
    namespace: Namespace  # run netdoctor here
    facts: dict[str, Any] = field(default_factory=dict)
    peer: Namespace | None = None


def tcp_states(ns: Namespace) -> Counter[str]:
    """TCP socket states in `ns` (from `ss -tan`, independent of netdoctor's own parser)."""
    out = run_in(ns, ["ss", "-Htan"]).stdout
    return Counter(line.split()[0] for line in out.splitlines() if line.strip())


def wait_for(
    what: str, predicate: Callable[[], bool], timeout: float = 30.0, describe: Callable[[], str] | None = None
) -> None:
    """Poll until `predicate()`; on timeout say what was awaited and, with `describe`, what was seen."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            seen = f" (seen: {describe()})" if describe else ""
            raise NetnsError(f"timed out after {timeout}s waiting for {what}{seen}")
        time.sleep(0.1)


def _netstat_counter(ns: Namespace, proto: str, field_name: str) -> int:
    """One field of /proc/net/snmp or /proc/net/netstat inside `ns` (header line, value line)."""
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        lines = run_in(ns, ["cat", path]).stdout.splitlines()
        for header, values in zip(lines[::2], lines[1::2], strict=False):
            names, numbers = header.split(), values.split()
            if names and names[0] == f"{proto}:" and field_name in names:
                return int(numbers[names.index(field_name)])
    raise NetnsError(f"{proto} {field_name} not found in {ns.name}")


@contextlib.contextmanager
def healthy() -> Iterator[ScenarioRun]:
    """An idle pair of namespaces with a little well-behaved TCP traffic (diagnose in the client)."""
    with netns_pair() as pair, workers() as started:
        server = pair.server.address
        started.append(start_worker(pair.server, "tests.netns:tcp_server", server, 8080, "close"))
        run_worker(pair.client, "tests.netns:connect_and_close", server, 8080, 5, 1)
        yield ScenarioRun("healthy", pair.client, {"server": f"{server}:8080"}, peer=pair.server)


@contextlib.contextmanager
def retransmit_storm(loss_percent: int = 15) -> Iterator[ScenarioRun]:
    """Bulk TCP from client to server while the server's prerouting drops `loss_percent`% of TCP.

    The loss is on the receiving side (see netns.add_random_drop), so the client's data
    segments are lost on the wire as far as TCP can tell, and the client retransmits:
    the retransmit ratio seen in the client namespace approaches the loss rate.
    """
    with netns_pair() as pair, workers() as started:
        server = pair.server.address
        started.append(start_worker(pair.server, "tests.netns:tcp_server", server, 5001, "discard"))
        add_random_drop(pair.server, loss_percent)
        sender = start_worker(pair.client, "tests.netns:bulk_sender", server, 5001)
        started.append(sender)
        before = _netstat_counter(pair.client, "Tcp", "RetransSegs")
        wait_for(
            "retransmits from the sender",
            lambda: _netstat_counter(pair.client, "Tcp", "RetransSegs") > before + 100,
        )
        yield ScenarioRun(
            "retransmit_storm",
            pair.client,
            {
                "loss_percent": loss_percent,
                "sender": pair.client.address,
                "receiver": f"{server}:5001",
                "dropped_so_far": dropped_packets(pair.server),
            },
            peer=pair.server,
        )


@contextlib.contextmanager
def ephemeral_ports(
    port_range: tuple[int, int] = (40000, 40199), busy: int = 190, fine: int = 5
) -> Iterator[ScenarioRun]:
    """`busy` connections held open to one ip:port with a narrowed ip_local_port_range, `fine` to another.

    With 200 usable ports and 190 in use toward 10.213.S.2:8080 that destination is at
    95% (critical); 10.213.S.3:9090 with 5 connections is at 2.5% and must not be named.
    """
    with netns_pair(server_addresses=2) as pair, workers() as started:
        busy_ip, fine_ip = pair.server.addresses[0], pair.server.addresses[1]
        sysctl(pair.client, "net.ipv4.ip_local_port_range", f"{port_range[0]}\t{port_range[1]}")
        started.append(start_worker(pair.server, "tests.netns:tcp_server", busy_ip, 8080, "hold"))
        started.append(start_worker(pair.server, "tests.netns:tcp_server", fine_ip, 9090, "hold"))
        holder = start_worker(pair.client, "tests.netns:hold_connections", busy_ip, 8080, busy, PORT_HOLDER)
        started.append(holder)
        other = start_worker(pair.client, "tests.netns:hold_connections", fine_ip, 9090, fine)
        started.append(other)
        if holder.info["connected"] != busy or other.info["connected"] != fine:
            raise NetnsError(f"could not open the connections: {holder.info} {other.info}")
        yield ScenarioRun(
            "ephemeral_ports",
            pair.client,
            {
                "port_range": port_range,
                "usable": port_range[1] - port_range[0] + 1,
                "busy_destination": f"{busy_ip}:8080",
                "busy_connections": busy,
                "fine_destination": f"{fine_ip}:9090",
                "fine_connections": fine,
                "source": pair.client.address,
                "holder_pid": holder.pid,
            },
            peer=pair.server,
        )


@contextlib.contextmanager
def timewait_closewait(closewait: int = 120, timewait: int = 200, max_tw_buckets: int = 256) -> Iterator[ScenarioRun]:
    """A server that never closes (CLOSE_WAIT) and one that closes first (TIME_WAIT), in one namespace.

    - `nd-leaky-srv` on :8080 accepts and never closes; the client connects and closes,
      so `closewait` sockets sit in CLOSE_WAIT owned by that process forever.
    - `nd-closing-srv` on :8081 closes each connection first, so `timewait` sockets sit in
      TIME_WAIT (60 s) on the server side, held against tcp_max_tw_buckets, lowered to
      `max_tw_buckets` in this namespace (200/256 = 78%: above the 70% warning).
    """
    with netns_pair() as pair, workers() as started:
        server = pair.server.address
        sysctl(pair.server, "net.ipv4.tcp_max_tw_buckets", max_tw_buckets)
        leaky = start_worker(pair.server, "tests.netns:tcp_server", server, 8080, "hold", LEAKY_SERVER)
        started.append(leaky)
        closer = start_worker(pair.server, "tests.netns:tcp_server", server, 8081, "close", CLOSING_SERVER)
        started.append(closer)
        run_worker(pair.client, "tests.netns:connect_and_close", server, 8080, closewait, 0)
        run_worker(pair.client, "tests.netns:connect_and_close", server, 8081, timewait, 1)
        wait_for(
            f"{closewait} CLOSE_WAIT and {timewait} TIME_WAIT in the server namespace",
            lambda: (s := tcp_states(pair.server))["CLOSE-WAIT"] >= closewait and s["TIME-WAIT"] >= timewait,
            describe=lambda: str(dict(tcp_states(pair.server))),
        )
        yield ScenarioRun(
            "timewait_closewait",
            pair.server,
            {
                "leaky_pid": leaky.pid,
                "leaky_name": LEAKY_SERVER,
                "leaky_listener": f"{server}:8080",
                "closewait": closewait,
                "timewait": timewait,
                "max_tw_buckets": max_tw_buckets,
            },
            peer=pair.client,
        )


@contextlib.contextmanager
def listen_overflow(backlog: int = 8, connects_per_s: int = 200) -> Iterator[ScenarioRun]:
    """A listener with a small backlog that never accepts, hammered with connects.

    Once its accept queue holds backlog + 1 connections, every new SYN is dropped and
    counted in ListenOverflows/ListenDrops in the server namespace.
    """
    with netns_pair() as pair, workers() as started:
        server = pair.server.address
        listener = start_worker(
            pair.server, "tests.netns:tcp_server", server, 8090, "never_accept", NON_ACCEPTING_SERVER, backlog
        )
        started.append(listener)
        before = _netstat_counter(pair.server, "TcpExt", "ListenOverflows")
        started.append(start_worker(pair.client, "tests.netns:connect_hammer", server, 8090, connects_per_s))
        wait_for(
            "listen overflows in the server namespace",
            lambda: _netstat_counter(pair.server, "TcpExt", "ListenOverflows") > before + 20,
        )
        yield ScenarioRun(
            "listen_overflow",
            pair.server,
            {
                "listener": f"{server}:8090",
                "port": 8090,
                "backlog": backlog,
                "pid": listener.pid,
                "name": NON_ACCEPTING_SERVER,
            },
            peer=pair.client,
        )


@contextlib.contextmanager
def socket_buffers(rcvbuf: int = 1024, datagrams_per_s: int = 5000) -> Iterator[ScenarioRun]:
    """A UDP receiver with a tiny SO_RCVBUF that never reads, flooded with datagrams.

    Every datagram past the first few overflows its buffer: Udp RcvbufErrors (and
    InErrors) rise at nearly the flood rate in the receiver's namespace.
    """
    with netns_pair() as pair, workers() as started:
        server = pair.server.address
        sink = start_worker(pair.server, "tests.netns:udp_sink", server, 9999, rcvbuf, UDP_SINK)
        started.append(sink)
        before = _netstat_counter(pair.server, "Udp", "RcvbufErrors")
        started.append(start_worker(pair.client, "tests.netns:udp_flood", server, 9999, datagrams_per_s))
        wait_for(
            "UDP receive buffer errors in the receiver namespace",
            lambda: _netstat_counter(pair.server, "Udp", "RcvbufErrors") > before + 100,
        )
        yield ScenarioRun(
            "socket_buffers",
            pair.server,
            {"socket": f"{server}:9999", "pid": sink.pid, "name": UDP_SINK, "rcvbuf": sink.info["rcvbuf"]},
            peer=pair.client,
        )


SCENARIOS: dict[str, Callable[[], contextlib.AbstractContextManager[ScenarioRun]]] = {
    "healthy": healthy,
    "retransmit_storm": retransmit_storm,
    "ephemeral_ports": ephemeral_ports,
    "timewait_closewait": timewait_closewait,
    "listen_overflow": listen_overflow,
    "socket_buffers": socket_buffers,
}
