"""Tests for the /proc/net/{tcp,tcp6,udp,udp6} parser and SocketTable.

Fixtures: `live-6.18` was captured from this project's kernel (a namespace holding a listener with
two unaccepted connections, ESTABLISHED / FIN_WAIT2 / TIME_WAIT / CLOSE_WAIT sockets, a dual-stack listener
with a v4-mapped connection, UDP with drops); its expected values below are what `ss -tanu` printed there.
`4.4`, `5.10` and `6.1` are written from those kernels' seq_printf formats (get_tcp4_sock, get_timewait4_sock,
get_openreq4, udp4_format_sock, padding to 149 / 127 columns for IPv4; raw `%pK` pointers on 4.4, hashed ones
later), with the same logical content in each.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import astuple
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdoctor.errors import ParseError
from netdoctor.sources.owners import find_socket_owners
from netdoctor.sources.parsers.sockets import (
    Socket,
    SocketTable,
    SocketTableBuilder,
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


def naive_usage(sockets: list[Socket], low: int, high: int, reserved: frozenset[int]) -> dict:
    usage: dict[tuple[str, str, int], dict[str, int]] = {}
    for s in sockets:
        if s.proto == "tcp" and s.state != "LISTEN" and low <= s.local_port <= high and s.local_port not in reserved:
            states = usage.setdefault((s.local_ip, s.remote_ip, s.remote_port), {})
            states[s.state] = states.get(s.state, 0) + 1
    return usage


def random_socket(draw_port: int, ip_number: int, state: str, proto: str = "tcp") -> Socket:
    return Socket(proto, 4, state, f"10.0.{ip_number % 3}.1", draw_port, f"10.1.{ip_number}.9", 443 + ip_number % 2,
                  0, 0, 0, 0, 0)  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 65535),
            st.integers(0, 5),
            st.sampled_from(["ESTABLISHED", "TIME_WAIT", "LISTEN"]),
            st.sampled_from(["tcp", "udp"]),
        ),  # fmt: skip
        max_size=60,
    ),
    bounds=st.tuples(st.integers(0, 65535), st.integers(0, 65535)).map(sorted),
    reserved=st.frozensets(st.integers(0, 65535), max_size=6),
)
def test_destination_usage_matches_a_plain_count(rows: list, bounds: list[int], reserved: frozenset[int]) -> None:
    """Any range (blocks of 256 ports wholly in, out, or cut by an end or a reserved port) counts right."""
    sockets = [random_socket(*row) for row in rows]
    low, high = bounds
    reserved = reserved | {port for port, *_ in rows[:2]}  # reserved ports that are really in use
    table = SocketTable.from_sockets(sockets)
    assert table.destination_usage(low, high, reserved) == naive_usage(sockets, low, high, reserved)


def test_destination_usage_with_more_distinct_addresses_than_packed_keys_hold() -> None:
    sockets = [
        Socket(
            "tcp",
            4,
            "ESTABLISHED",
            "10.0.0.1",
            40000 + n % 2,
            f"10.{n >> 16}.{n >> 8 & 255}.{n & 255}",
            443,
            0,
            0,
            0,
            0,
            0,
        )  # fmt: skip
        for n in range(70_000)
    ]
    table = SocketTable.from_sockets(sockets)
    assert len(table._ips) > 1 << 16
    assert table.destination_usage(40000, 40000) == naive_usage(sockets, 40000, 40000, frozenset())


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


# ------------------------------------------------------------------------------------------ streaming


def parse_in_chunks(text: str, proto: str, family: int, cuts: list[int]) -> SocketTable:
    data = text.encode()
    builder = SocketTableBuilder(proto, family)
    previous = 0
    for cut in sorted({min(c, len(data)) for c in cuts}):
        builder.feed(data[previous:cut])
        previous = cut
    builder.feed(data[previous:])
    return builder.finish()


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(FILES)),
    kernel=st.sampled_from([*WRITTEN_KERNELS, "live-6.18"]),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_builder_gives_the_same_table_however_the_text_is_chunked(name: str, kernel: str, cuts: list[int]) -> None:
    text = (KERNELS / kernel / "proc" / "net" / name).read_text()
    whole = parse_socket_table(text, *FILES[name])
    assert parse_in_chunks(text, *FILES[name], cuts) == whole
    assert list(parse_in_chunks(text, *FILES[name], cuts)) == list(whole)


def big_tcp_text(rows: int, family: int = 4) -> str:
    """`rows` ESTABLISHED/TIME_WAIT rows toward 3 destinations, in the kernel's layout for `family`."""
    if family == 4:
        local, remotes = "0500000A", ["0700000A", "0800000A", "0900000A"]
    else:
        local = "B80D0120000000000000000005000000"
        remotes = [f"B80D01200000000000000000{n:02X}000000" for n in (7, 8, 9)]
    lines = [HEADER]
    for i in range(rows):
        state = "06" if i % 5 == 0 else "01"
        lines.append(
            f"{i:4d}: {local}:{1024 + i % 60000:04X} {remotes[i % 3]}:{0x1538 + i % 3:04X} {state} "
            f"{i % 7:08X}:{i % 11:08X} 00:00000000 00000000  {1000 + i % 2:4d}        0 {50_000 + i} 1 0\n"
        )
    return "".join(lines)


@pytest.mark.parametrize("family", [4, 6])
def test_batches_across_many_rows_keep_every_column(family: int) -> None:
    """Several parse batches (rows > one batch), fed as page-sized chunks like /proc hands them out."""
    rows = 20_000
    text = big_tcp_text(rows, family)
    table = parse_in_chunks(text, "tcp", family, list(range(0, len(text), 4049)))
    assert table == parse_socket_table(text, "tcp", family)
    assert len(table) == rows
    prefix = "10.0.0." if family == 4 else "2001:db8::"
    for i in (0, 1, 4_999, 12_345, rows - 1):
        sock = list(table)[i] if i < 5 else table._row(i)
        assert (sock.local_ip, sock.local_port) == (prefix + "5", 1024 + i % 60000)
        assert (sock.remote_ip, sock.remote_port) == (prefix + "789"[i % 3], 0x1538 + i % 3)
        assert sock.state == ("TIME_WAIT" if i % 5 == 0 else "ESTABLISHED")
        assert (sock.tx_queue, sock.rx_queue, sock.uid, sock.inode) == (i % 7, i % 11, 1000 + i % 2, 50_000 + i)
    assert table.state_counts() == {"ESTABLISHED": rows * 4 // 5, "TIME_WAIT": rows // 5}
    assert len(table.in_state("TIME_WAIT")) == rows // 5


def test_builder_reports_the_bad_line_of_a_later_batch_and_then_refuses_input() -> None:
    text = big_tcp_text(5_000)
    lines = text.splitlines(keepends=True)
    lines[4_321] = lines[4_321].replace(" 01 ", " 0G ", 1) if " 01 " in lines[4_321] else lines[4_321][:30] + "\n"
    builder = SocketTableBuilder("tcp", 4)
    with pytest.raises(ParseError, match="line 4322:"):
        for start in range(0, len(lines), 500):
            builder.feed("".join(lines[start : start + 500]).encode())
        builder.finish()
    with pytest.raises(ParseError):
        builder.feed(b"more")


def test_a_line_split_over_chunks_and_a_last_line_without_newline() -> None:
    data = (HEADER + GOOD + GOOD.rstrip("\n")).encode()
    builder = SocketTableBuilder("tcp", 4)
    for i in range(len(data)):
        builder.feed(data[i : i + 1])
    table = builder.finish()
    assert [(s.local_ip, s.local_port, s.state, s.inode) for s in table] == [("127.0.0.1", 631, "LISTEN", 635)] * 2


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
            assert parse_in_chunks(text, proto, family, [position, 2 * position]) == table
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

REPO = Path(__file__).resolve().parents[3]
STREAMED_READ = """
import dataclasses, json
from netdoctor.sources.reader import RawSample, Reader
sample = RawSample()
Reader("/").read_sockets(sample)
print(json.dumps({rel: [sample.files[rel], [list(dataclasses.astuple(s)) for s in table]]
                  for rel, table in sample.parsed.items()}))
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

    # The product's streamed read (Reader.read_sockets), run inside that namespace, gives the exact text and
    # the table that text parses to.
    streamed = json.loads(
        subprocess.run(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", STREAMED_READ],
            check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        ).stdout
    )  # fmt: skip
    assert sorted(streamed) == [f"proc/net/{name}" for name in ("tcp", "tcp6", "udp", "udp6")]
    for rel, (text, rows) in streamed.items():
        assert [list(astuple(s)) for s in parse_socket_table(text, *FILES[rel.rsplit("/", 1)[1]])] == rows
    assert Counter(tuple(row[:7]) for _text, rows in streamed.values() for row in rows) == Counter(
        (s.proto, s.family, s.state, s.local_ip, s.local_port, s.remote_ip, s.remote_port) for s in table
    )

    # Owners: the CLOSE_WAIT socket and the listener belong to the scenario process.
    wanted = {table.in_state("CLOSE_WAIT")[0].inode, table.listeners()[0].inode}
    owners = find_socket_owners("/proc", wanted)
    assert set(owners) == wanted
    assert {pid for pid, _comm in owners.values()} == {holder_pid}
    assert all(comm.startswith("python") for _pid, comm in owners.values())
