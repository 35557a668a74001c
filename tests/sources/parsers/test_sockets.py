"""Tests for the /proc/net/{tcp,tcp6,udp,udp6} parser and SocketTable.

Fixtures: `live-6.18` was captured from this project's kernel (a namespace holding a listener with
two unaccepted connections, ESTABLISHED / FIN_WAIT2 / TIME_WAIT / CLOSE_WAIT sockets, a dual-stack listener
with a v4-mapped connection, UDP with drops); its expected values below are what `ss -tanu` printed there.
`4.4`, `5.10` and `6.1` are written from those kernels' seq_printf formats (get_tcp4_sock, get_timewait4_sock,
get_openreq4, udp4_format_sock, padding to 149 / 127 columns for IPv4; raw `%pK` pointers on 4.4, hashed ones
later), with the same logical content in each.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdoctor.errors import ParseError
from netdoctor.sources.owners import _counts_with_threads, find_socket_owners, read_destination_state_counts
from netdoctor.sources.parsers.sockets import (
    DestinationStateGrouper,
    Socket,
    SocketTable,
    group_by_destination_and_state,
    hex_to_ip,
    parse_socket_table,
)
from tests.conftest import FIXTURES, require_binary, require_root

KERNELS = FIXTURES / "kernels"
FILES = {"tcp": ("tcp", 4), "tcp6": ("tcp", 6), "udp": ("udp", 4), "udp6": ("udp", 6)}
WRITTEN_KERNELS = ["4.4", "5.10", "6.1"]


def load(kernel: str) -> dict[tuple[str, int], str]:
    net = KERNELS / kernel / "proc" / "net"
    return {FILES[name]: (net / name).read_text() for name in FILES}


def table_of(kernel: str) -> SocketTable:
    return SocketTable.merge([parse_socket_table(text, *key) for key, text in load(kernel).items()])


def by_local(table: SocketTable, ip: str, port: int, proto: str = "tcp") -> list[Socket]:
    return [s for s in table if s.local_ip == ip and s.local_port == port and s.proto == proto]


# ------------------------------------------------------------------------------------------ fixtures


@pytest.mark.parametrize("kernel", WRITTEN_KERNELS)
def test_written_kernel_fixtures_parse_to_the_rows_they_hold(kernel: str) -> None:
    table = table_of(kernel)
    assert len(table) == 11 + 4 + 3 + 1
    assert table.state_counts("tcp") == {
        "ESTABLISHED": 4,
        "SYN_SENT": 1,
        "SYN_RECV": 1,
        "FIN_WAIT2": 1,
        "TIME_WAIT": 3,
        "CLOSE_WAIT": 1,
        "LAST_ACK": 1,
        "LISTEN": 3,
    }
    assert table.state_counts("udp") == {"ESTABLISHED": 1, "CLOSE": 3}

    web = [s for s in table.listeners() if s.local_port == 8080]
    assert len(web) == 1 and web[0].rx_queue == 5 and web[0].uid == 33 and web[0].local_ip == "10.0.0.5"
    assert {(s.local_ip, s.local_port, s.family) for s in table.listeners()} == {
        ("0.0.0.0", 22, 4),
        ("10.0.0.5", 8080, 4),
        ("::", 22, 6),
    }

    request = table.in_state("SYN_RECV")
    assert [(r.remote_ip, r.remote_port, r.inode, r.uid) for r in request] == [("192.168.1.20", 51000, 0, 33)]
    ssh = by_local(table, "10.0.0.5", 22)
    assert [(s.state, s.tx_queue, s.remote_ip, s.remote_port) for s in ssh] == [
        ("ESTABLISHED", 0x24, "192.168.1.7", 60122)
    ]
    mapped = by_local(table, "::ffff:10.0.0.5", 22)
    assert [(m.family, m.remote_ip, m.remote_port) for m in mapped] == [(6, "::ffff:192.168.1.30", 50500)]
    v6 = by_local(table, "2001:db8::5", 443)
    assert [(s.remote_ip, s.uid) for s in v6] == [("2001:db8::99", 65534)]

    resolver = by_local(table, "127.0.0.53", 53, "udp")
    assert [(r.state, r.rx_queue, r.drops, r.uid) for r in resolver] == [("CLOSE", 0x900, 12, 101)]
    assert by_local(table, "fe80::1", 546, "udp")[0].family == 6
    assert all(s.drops == 0 for s in table if s.proto == "tcp")


@pytest.mark.parametrize("kernel", WRITTEN_KERNELS)
def test_destination_usage_counts_ephemeral_ports_per_destination(kernel: str) -> None:
    table = table_of(kernel)
    usage = table.destination_usage(32768, 60999)
    assert usage == {
        ("10.0.0.5", "10.0.0.7", 5432): {"ESTABLISHED": 1, "TIME_WAIT": 2, "FIN_WAIT2": 1},
        ("10.0.0.5", "10.0.0.8", 443): {"SYN_SENT": 1},
        ("2001:db8::5", "2001:db8::7", 5432): {"TIME_WAIT": 1},
    }
    # 33000 reserved and 40000 out of range: those sockets no longer count.
    narrowed = table.destination_usage(32768, 39999, reserved=frozenset({33000}))
    assert narrowed == {
        ("10.0.0.5", "10.0.0.7", 5432): {"TIME_WAIT": 2, "FIN_WAIT2": 1},
        ("2001:db8::5", "2001:db8::7", 5432): {"TIME_WAIT": 1},
    }


def test_live_fixture_matches_what_ss_showed_in_that_namespace() -> None:
    table = table_of("live-6.18")
    rows = Counter((s.proto, s.state, s.local_ip, s.local_port, s.remote_ip, s.remote_port) for s in table)
    # `ss -tanu` in the capture namespace, ports from its output (remote "*" is 0 in /proc).
    assert rows == Counter(
        {
            ("udp", "ESTABLISHED", "127.0.0.1", 52797, "127.0.0.1", 5353): 1,
            ("udp", "CLOSE", "0.0.0.0", 5353, "0.0.0.0", 0): 1,
            ("udp", "CLOSE", "::1", 5354, "::", 0): 1,
            ("tcp", "LISTEN", "127.0.0.1", 8080, "0.0.0.0", 0): 1,
            ("tcp", "ESTABLISHED", "127.0.0.1", 59946, "127.0.0.1", 8443): 1,
            ("tcp", "ESTABLISHED", "127.0.0.1", 56754, "127.0.0.1", 8080): 1,
            ("tcp", "FIN_WAIT2", "127.0.0.1", 56764, "127.0.0.1", 8080): 1,
            ("tcp", "TIME_WAIT", "127.0.0.1", 56776, "127.0.0.1", 8080): 1,
            ("tcp", "ESTABLISHED", "127.0.0.1", 56792, "127.0.0.1", 8080): 1,
            ("tcp", "ESTABLISHED", "127.0.0.1", 56806, "127.0.0.1", 8080): 1,
            ("tcp", "ESTABLISHED", "127.0.0.1", 8080, "127.0.0.1", 56754): 1,
            ("tcp", "ESTABLISHED", "127.0.0.1", 8080, "127.0.0.1", 56792): 1,
            ("tcp", "CLOSE_WAIT", "127.0.0.1", 8080, "127.0.0.1", 56764): 1,
            ("tcp", "ESTABLISHED", "127.0.0.1", 8080, "127.0.0.1", 56806): 1,
            ("tcp", "LISTEN", "::", 8443, "::", 0): 1,
            ("tcp", "ESTABLISHED", "::ffff:127.0.0.1", 8443, "::ffff:127.0.0.1", 59946): 1,
            ("tcp", "ESTABLISHED", "::1", 49576, "::1", 8443): 1,
            ("tcp", "ESTABLISHED", "::1", 8443, "::1", 49576): 1,
        }
    )
    listener = by_local(table, "127.0.0.1", 8080)[0]
    # ss: Recv-Q 2 (accept queue), Send-Q 16 (backlog limit, netlink only): /proc shows the 2 and a 0.
    assert (listener.state, listener.rx_queue, listener.tx_queue, listener.inode) == ("LISTEN", 2, 0, 813219)
    close_wait = table.in_state("CLOSE_WAIT")[0]
    assert (close_wait.rx_queue, close_wait.inode) == (1, 813223)
    assert [s.rx_queue for s in table if s.local_port == 8080 and s.remote_port == 56754] == [3000]
    unconnected = by_local(table, "0.0.0.0", 5353, "udp")[0]
    assert (unconnected.rx_queue, unconnected.drops, unconnected.inode) == (2304, 39, 812635)


# ------------------------------------------------------------------------------------------ fast path


@pytest.mark.parametrize("kernel", [*WRITTEN_KERNELS, "live-6.18"])
def test_fast_grouping_agrees_with_the_full_table(kernel: str) -> None:
    texts = load(kernel)
    expected = Counter((s.local_ip, s.remote_ip, s.remote_port, s.state) for s in table_of(kernel) if s.proto == "tcp")
    assert group_by_destination_and_state(texts) == dict(expected)


def test_fast_grouping_names_states_and_keeps_mapped_addresses_v6() -> None:
    groups = group_by_destination_and_state(load("5.10"))
    assert groups[("10.0.0.5", "10.0.0.7", 5432, "TIME_WAIT")] == 2
    assert groups[("::ffff:10.0.0.5", "::ffff:192.168.1.30", 50500, "ESTABLISHED")] == 1
    assert groups[("0.0.0.0", "0.0.0.0", 0, "LISTEN")] == 1
    assert not any(key[0] == "127.0.0.53" for key in groups), "UDP files are not part of the TCP grouping"


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_grouper_gives_the_same_answer_however_the_text_is_chunked(cuts: list[int]) -> None:
    data = (KERNELS / "6.1" / "proc" / "net" / "tcp").read_bytes()
    expected = group_by_destination_and_state({("tcp", 4): data.decode()})
    grouper = DestinationStateGrouper()
    previous = 0
    for cut in sorted({min(c, len(data)) for c in cuts}):
        grouper.feed(data[previous:cut])
        previous = cut
    grouper.feed(data[previous:])
    assert grouper.result() == expected


# ------------------------------------------------------------------------------------------ table API


def test_table_round_trips_through_sockets_merge_and_equality() -> None:
    tcp = parse_socket_table(load("4.4")[("tcp", 4)], "tcp", 4)
    udp = parse_socket_table(load("4.4")[("udp", 4)], "udp", 4)
    merged = SocketTable.merge([tcp, udp])
    assert len(merged) == len(tcp) + len(udp)
    assert list(merged) == [*tcp, *udp]
    assert SocketTable.from_sockets(list(merged)) == merged
    assert merged != SocketTable.merge([udp, tcp])
    assert merged == table_of("4.4").merge([tcp, udp])
    other = list(merged)
    other[3] = Socket(**{**other[3].__dict__, "remote_ip": "10.9.9.9"})
    assert SocketTable.from_sockets(other) != merged


def test_table_is_columnar_not_one_object_per_socket() -> None:
    row = "{i:6d}: 0500000A:{port:04X} 0700000A:1538 01 00000000:00000000 00:00000000 00000000 1000 0 {ino}"
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    text = header + "\n".join(row.format(i=i, port=1024 + i % 60000, ino=10_000 + i) for i in range(100_000))
    table = parse_socket_table(text, "tcp", 4)
    assert len(table) == 100_000
    column_bytes = sum(
        getattr(table, name).buffer_info()[1] * getattr(table, name).itemsize
        for name in SocketTable.__slots__
        if name != "_ips"
    )
    assert column_bytes / len(table) < 64
    assert len(table._ips) == 2  # two distinct addresses, interned once
    assert table.state_counts() == {"ESTABLISHED": 100_000}
    assert table.destination_usage(32768, 60999) == {("10.0.0.5", "10.0.0.7", 5432): {"ESTABLISHED": 28_232 + 8_256}}


def test_unknown_future_state_stays_visible() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "12345: 0100007F:0277 00000000:0000 0D 00000000:00000000 00:00000000 00000000     0        0 7 1 0\n"
    )
    table = parse_socket_table(text, "tcp", 4)
    assert table.state_counts() == {"UNKNOWN_13": 1}
    assert [s.local_port for s in table.in_state("UNKNOWN_13")] == [631]
    assert SocketTable.from_sockets(table) == table


def test_hex_to_ip_reverses_each_32_bit_word() -> None:
    assert hex_to_ip("0100007F") == "127.0.0.1"
    assert hex_to_ip("00000000000000000000000001000000") == "::1"
    assert hex_to_ip("0000000000000000FFFF00000100007F") == "::ffff:127.0.0.1"
    assert hex_to_ip(b"B80D0120000000000000000005000000") == "2001:db8::5"
    with pytest.raises(ValueError):
        hex_to_ip("0100007")


# ------------------------------------------------------------------------------------------ bad input

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
GOOD = "   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 635 1 0\n"


@pytest.mark.parametrize(
    ("text", "proto", "family", "message"),
    [
        ("", "tcp", 4, "line 1: missing"),
        (GOOD, "tcp", 4, "line 1: missing"),
        (HEADER + GOOD + GOOD[:40] + "\n", "tcp", 4, "line 3: not a /proc/net/tcp row"),
        (HEADER + GOOD + "\n" + GOOD, "tcp", 4, "line 3:"),
        (HEADER + GOOD.replace("0A 0000", "XY 0000"), "tcp", 4, "line 2:"),
        (HEADER + GOOD, "tcp", 6, "not 32 hex digits (IPv6)"),
        (HEADER + GOOD, "udp", 4, "without the drops column"),
        (HEADER + GOOD.replace(" 635 ", " 99999999999999999999999 "), "tcp", 4, "line"),
    ],
)
def test_malformed_input_raises_parse_error_with_the_line(text: str, proto: str, family: int, message: str) -> None:
    with pytest.raises(ParseError, match=re.escape(message)):
        parse_socket_table(text, proto, family)


def test_header_only_is_an_empty_table_and_trailing_blank_lines_are_tolerated() -> None:
    assert len(parse_socket_table(HEADER, "tcp", 4)) == 0
    assert len(parse_socket_table(HEADER + GOOD + "\n\n", "tcp", 4)) == 1


LIVE_LINES = (KERNELS / "live-6.18" / "proc" / "net" / "tcp").read_text().splitlines()
UDP_LINES = (KERNELS / "4.4" / "proc" / "net" / "udp").read_text().splitlines()


@settings(max_examples=300, deadline=None)
@given(
    source=st.sampled_from([("tcp", LIVE_LINES), ("udp", UDP_LINES)]),
    line=st.integers(min_value=0, max_value=3),
    mutation=st.sampled_from(["truncate", "extra", "garbage", "drop_token", "empty", "replace"]),
    position=st.integers(min_value=0, max_value=200),
    junk=st.text(max_size=30),
)
def test_fuzzed_input_returns_or_raises_parse_error(
    source: tuple[str, list[str]], line: int, mutation: str, position: int, junk: str
) -> None:
    proto, lines = source
    lines = list(lines)
    target = lines[line]
    if mutation == "truncate":
        lines[line] = target[: position % (len(target) + 1)]
    elif mutation == "extra":
        lines[line] = target.rstrip() + " " + junk
    elif mutation == "garbage":
        lines[line] = target[:position] + junk + target[position:]
    elif mutation == "drop_token":
        tokens = target.split()
        del tokens[position % len(tokens)]
        lines[line] = " ".join(tokens)
    elif mutation == "empty":
        lines = lines[: position % 3]
    else:
        lines[line] = junk
    text = "\n".join(lines)
    for family in (4, 6):
        try:
            table = parse_socket_table(text, proto, family)
        except ParseError:
            pass
        else:
            assert all(isinstance(s.local_port, int) for s in table)
        try:
            group_by_destination_and_state({(proto, family): text})
        except ParseError:
            pass


# ------------------------------------------------------------------------------------------ real kernel

SCENARIO = r"""
import socket, sys, time
def conn(addr, family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_STREAM); s.connect(addr); return s
listener = socket.socket(); listener.bind(("127.0.0.1", 8080)); listener.listen(16)
c1 = conn(("127.0.0.1", 8080)); s1, _ = listener.accept(); c1.sendall(b"x" * 3000)
c2 = conn(("127.0.0.1", 8080)); s2, _ = listener.accept(); c2.close()            # s2 CLOSE_WAIT
c3 = conn(("127.0.0.1", 8080)); s3, _ = listener.accept(); c3.close()
time.sleep(0.05); s3.recv(1); s3.close()                                            # c3 TIME_WAIT
c4 = conn(("127.0.0.1", 8080)); c5 = conn(("127.0.0.1", 8080))                    # accept queue: 2
dual = socket.socket(socket.AF_INET6); dual.bind(("::", 8443)); dual.listen(8)
c6 = conn(("127.0.0.1", 8443)); s6, _ = dual.accept()                               # v4-mapped
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.1", 5353))
time.sleep(0.2)
print("ready", flush=True)
sys.stdin.read()
"""

SS_STATES = {"ESTAB": "ESTABLISHED", "UNCONN": "CLOSE"}


def _ss_rows(namespace: str) -> Counter[tuple[str, str, str, int, str, int, int]]:
    """(proto, state, local ip, port, remote ip, port, recv-q) from `ss -tanu` run in `namespace`."""
    out = subprocess.run(
        ["ip", "netns", "exec", namespace, "ss", "-tanu"], check=True, capture_output=True, text=True
    ).stdout
    rows: Counter[tuple[str, str, str, int, str, int, int]] = Counter()
    for line in out.splitlines()[1:]:
        proto, state, recv_q, _send_q, local, remote = line.split()[:6]
        local_ip, local_port = local.rsplit(":", 1)
        remote_ip, remote_port = remote.rsplit(":", 1)
        wildcard = "::" if local_ip in ("*", "[::]") else "0.0.0.0"
        rows[
            (
                proto,
                SS_STATES.get(state, state.replace("-", "_").replace("WAIT_", "WAIT")),
                wildcard if local_ip == "*" else local_ip.strip("[]"),
                int(local_port),
                wildcard if remote_ip == "*" else remote_ip.strip("[]"),
                0 if remote_port == "*" else int(remote_port),
                int(recv_q),
            )
        ] += 1
    return rows


@pytest.fixture
def scenario_namespace() -> tuple[str, int]:
    """A fresh namespace with the SCENARIO process holding its sockets; yields (namespace, that pid)."""
    require_root()
    require_binary("ip")
    require_binary("ss")
    namespace = f"ndtest-sockets-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    holder = None
    try:
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
        holder = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", SCENARIO],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield namespace, holder.pid
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        subprocess.run(["ip", "netns", "del", namespace], check=False)


@pytest.mark.real
def test_parse_of_a_real_namespace_matches_ss(scenario_namespace: tuple[str, int]) -> None:
    namespace, holder_pid = scenario_namespace
    net = Path(f"/proc/{holder_pid}/net")
    table = SocketTable.merge(
        [parse_socket_table((net / name).read_text(), *FILES[name]) for name in ("tcp", "tcp6", "udp", "udp6")]
    )
    ours = Counter((s.proto, s.state, s.local_ip, s.local_port, s.remote_ip, s.remote_port, s.rx_queue) for s in table)
    deadline = time.monotonic() + 5
    while (theirs := _ss_rows(namespace)) != ours and time.monotonic() < deadline:
        time.sleep(0.2)  # a FIN still in flight between the two reads
    assert ours == theirs
    assert table.state_counts() == {
        "ESTABLISHED": 8,
        "FIN_WAIT2": 1,
        "TIME_WAIT": 1,
        "CLOSE_WAIT": 1,
        "LISTEN": 2,
    }
    assert [(s.local_port, s.rx_queue) for s in table.listeners()] == [(8080, 2), (8443, 0)]
    assert table.state_counts("udp") == {"CLOSE": 1}

    # The fast path, read live from that namespace, agrees with the table (both reader variants).
    expected = dict(Counter((s.local_ip, s.remote_ip, s.remote_port, s.state) for s in table if s.proto == "tcp"))
    assert read_destination_state_counts(str(net)) == expected
    assert _counts_with_threads([str(net / "tcp"), str(net / "tcp6")]) == expected

    # Owners: the CLOSE_WAIT socket and the listener belong to the scenario process.
    wanted = {table.in_state("CLOSE_WAIT")[0].inode, table.listeners()[0].inode}
    owners = find_socket_owners("/proc", wanted)
    assert set(owners) == wanted
    assert {pid for pid, _comm in owners.values()} == {holder_pid}
    assert all(comm.startswith("python") for _pid, comm in owners.values())
