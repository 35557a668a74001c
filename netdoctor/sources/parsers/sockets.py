"""Parser for /proc/net/{tcp,tcp6,udp,udp6}: the socket inventory node_exporter does not export.

Why a columnar table: checks ask aggregate questions (how many TIME_WAIT sockets per destination, who holds
the CLOSE_WAIT ones), on hosts that can hold 100k+ sockets. One Python object per socket costs ~0.5 KB and
seconds of CPU; a few `array` columns plus one interned list of distinct addresses cost ~60 bytes a socket.
`Socket` objects are made only when a caller iterates.

The file format (net/ipv4/tcp_ipv4.c get_tcp4_sock / get_timewait4_sock / get_openreq4, net/ipv4/udp.c
udp4_format_sock, and their ipv6 twins), stable from 2.6.x to 6.x:

    sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ...
     0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 ...

Addresses are the in-memory (network order) 32-bit words printed with %08X, i.e. byte-reversed on the
little-endian hosts Linux networking runs on (x86, arm64); IPv6 is four such words. Ports are host-order %04X.
TIME_WAIT rows are shorter (inode 0, fewer trailing fields); UDP rows end with the `drops` counter.

`tx_queue` / `rx_queue` are what /proc prints: for LISTEN, rx_queue is the current accept-queue length
(sk_ack_backlog); tx_queue is write_seq - snd_una, which /proc prints as 0 for a listener — the backlog
*limit* that `ss -l` shows as Send-Q comes from netlink (idiag_wqueue) and is not in this file.
"""

from __future__ import annotations

import re
import socket as _socket
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat

from netdoctor.errors import ParseError

# include/net/tcp_states.h numbering; UDP reuses ESTABLISHED (connected) and CLOSE (unconnected).
TCP_STATES: dict[int, str] = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}
STATE_NUMBERS: dict[str, int] = {name: number for number, name in TCP_STATES.items()}

PROTOS = ("tcp", "udp")
_PROTO_CODE = {"tcp": 0, "udp": 1}

_HEX = "[0-9A-Fa-f]"
# One data row. Groups: local ip, local port, remote ip, remote port, state, tx_queue, rx_queue, uid, inode,
# and (UDP only, token 13) drops. The trailing part is free: TCP has several layouts (full / TIME_WAIT /
# request sockets) and newer kernels may append columns.
_ROW = re.compile(
    rf" *\d+: ({_HEX}+):({_HEX}{{4}}) ({_HEX}+):({_HEX}{{4}}) ({_HEX}{{2}})"
    rf" ({_HEX}{{8}}):({_HEX}{{8}}) {_HEX}{{2}}:{_HEX}+ +{_HEX}+ +(\d+) +-?\d+ +(\d+)"
    r"(?: +-?\d+ +\S+ +(-?\d+))?(?: .*)?"
)
_HEADER = re.compile(r"\s*sl\s+local_address\s")


def state_name(number: int) -> str:
    """Name of a kernel socket state; an unknown (future) number stays visible instead of failing."""
    return TCP_STATES.get(number) or f"UNKNOWN_{number}"


def hex_to_ip(hex_address: str | bytes) -> str:
    """Canonical text of a /proc/net address: 8 hex digits -> IPv4, 32 -> IPv6 ("::ffff:10.0.0.1" stays v6).

    Each 32-bit word was printed from memory in host (little-endian) order, so each word's bytes are reversed.
    Raises ValueError on anything else (callers turn it into ParseError with the line number).
    """
    raw = bytes.fromhex(hex_address.decode("ascii") if isinstance(hex_address, bytes) else hex_address)
    if len(raw) == 4:
        return _socket.inet_ntop(_socket.AF_INET, raw[::-1] if _LITTLE_ENDIAN else raw)
    if len(raw) == 16:
        if _LITTLE_ENDIAN:
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        return _socket.inet_ntop(_socket.AF_INET6, raw)
    raise ValueError(f"address {hex_address!r} is neither 8 nor 32 hex digits")


_LITTLE_ENDIAN = sys.byteorder == "little"


@dataclass(frozen=True)
class Socket:
    """One row of /proc/net/{tcp,tcp6,udp,udp6}."""

    proto: str  # "tcp" | "udp"
    family: int  # 4 | 6
    state: str  # TCP_STATES name
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    tx_queue: int  # LISTEN: what /proc prints (write_seq - snd_una, i.e. 0), see module docstring
    rx_queue: int  # LISTEN: current accept queue length
    uid: int
    inode: int  # 0 for TIME_WAIT and request sockets: no owner to find
    drops: int  # UDP's last column; 0 for TCP


class SocketTable:
    """Sockets as parallel columns: `array`s of numbers plus indexes into one list of distinct address texts.

    Why: 100k rows cost a few MB and aggregate queries run as C loops over columns; `Socket` objects are
    built only on iteration or for the (usually few) rows a query returns. Row order is kept (kernel order,
    then table order for `merge`), and equality is row-by-row.
    """

    __slots__ = (
        "_ips",
        "_proto",
        "_family",
        "_state",
        "_local_ip",
        "_local_port",
        "_remote_ip",
        "_remote_port",
        "_tx",
        "_rx",
        "_uid",
        "_inode",
        "_drops",
    )
    __hash__ = None  # type: ignore[assignment]

    def __init__(self) -> None:
        self._ips: list[str] = []
        self._proto = array("B")
        self._family = array("B")
        self._state = array("B")
        self._local_ip = array("I")
        self._local_port = array("H")
        self._remote_ip = array("I")
        self._remote_port = array("H")
        self._tx = array("Q")
        self._rx = array("Q")
        self._uid = array("Q")
        self._inode = array("Q")
        self._drops = array("q")

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_sockets(cls, sockets: Iterable[Socket]) -> SocketTable:
        """Build a table from Socket objects (tests, captures written by hand)."""
        table = cls()
        ip_index: dict[str, int] = {}
        for sock in sockets:
            table._append(sock, ip_index)
        return table

    def _intern(self, ip: str, ip_index: dict[str, int]) -> int:
        index = ip_index.get(ip)
        if index is None:
            index = ip_index[ip] = len(self._ips)
            self._ips.append(ip)
        return index

    def _append(self, sock: Socket, ip_index: dict[str, int]) -> None:
        self._proto.append(_PROTO_CODE[sock.proto])
        self._family.append(sock.family)
        self._state.append(STATE_NUMBERS.get(sock.state, 0) if not sock.state.startswith("UNKNOWN_") else
                           int(sock.state.removeprefix("UNKNOWN_")))  # fmt: skip
        self._local_ip.append(self._intern(sock.local_ip, ip_index))
        self._local_port.append(sock.local_port)
        self._remote_ip.append(self._intern(sock.remote_ip, ip_index))
        self._remote_port.append(sock.remote_port)
        self._tx.append(sock.tx_queue)
        self._rx.append(sock.rx_queue)
        self._uid.append(sock.uid)
        self._inode.append(sock.inode)
        self._drops.append(sock.drops)

    @classmethod
    def merge(cls, tables: list[SocketTable]) -> SocketTable:
        """One table holding the rows of `tables` in order (e.g. tcp + tcp6 + udp + udp6)."""
        merged = cls()
        ip_index: dict[str, int] = {}
        for table in tables:
            remap = [merged._intern(ip, ip_index) for ip in table._ips]
            for name in cls.__slots__:
                if name in ("_ips", "_local_ip", "_remote_ip"):
                    continue
                getattr(merged, name).extend(getattr(table, name))
            merged._local_ip.extend(map(remap.__getitem__, table._local_ip))
            merged._remote_ip.extend(map(remap.__getitem__, table._remote_ip))
        return merged

    # ------------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self._state)

    def _row(self, i: int) -> Socket:
        return Socket(
            proto=PROTOS[self._proto[i]],
            family=self._family[i],
            state=state_name(self._state[i]),
            local_ip=self._ips[self._local_ip[i]],
            local_port=self._local_port[i],
            remote_ip=self._ips[self._remote_ip[i]],
            remote_port=self._remote_port[i],
            tx_queue=self._tx[i],
            rx_queue=self._rx[i],
            uid=self._uid[i],
            inode=self._inode[i],
            drops=self._drops[i],
        )

    def __iter__(self) -> Iterator[Socket]:
        return map(self._row, range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SocketTable):
            return NotImplemented
        if len(self) != len(other):
            return False
        for name in self.__slots__:
            if name in ("_ips", "_local_ip", "_remote_ip"):
                continue
            if getattr(self, name) != getattr(other, name):
                return False
        return all(
            [self._ips[i] for i in getattr(self, column)] == [other._ips[i] for i in getattr(other, column)]
            for column in ("_local_ip", "_remote_ip")
        )

    def __repr__(self) -> str:
        return f"SocketTable({len(self)} sockets)"

    def _rows_where(self, proto: str, state_number: int | None) -> list[int]:
        proto_code = _PROTO_CODE[proto]
        protos, states = self._proto, self._state
        if state_number is None:
            return [i for i in range(len(self)) if protos[i] == proto_code]
        return [i for i in range(len(self)) if states[i] == state_number and protos[i] == proto_code]

    def state_counts(self, proto: str = "tcp") -> dict[str, int]:
        """Number of sockets per state name, e.g. {"ESTABLISHED": 120, "TIME_WAIT": 4000}."""
        proto_code = _PROTO_CODE[proto]
        counts = Counter(s for p, s in zip(self._proto, self._state, strict=True) if p == proto_code)
        return {state_name(number): count for number, count in sorted(counts.items())}

    def destination_usage(
        self, port_low: int, port_high: int, reserved: frozenset[int] = frozenset()
    ) -> dict[tuple[str, str, int], dict[str, int]]:
        """(local_ip, remote_ip, remote_port) -> {state: count} over TCP connections using an ephemeral port.

        Why only local ports in [port_low, port_high] minus `reserved`: ephemeral-port exhaustion is about the
        ports connect() may pick for one (source, destination) pair; a socket bound to a fixed port does not
        consume that range. LISTEN sockets have no destination and are left out.
        """
        tcp, listen = _PROTO_CODE["tcp"], STATE_NUMBERS["LISTEN"]
        counts = Counter(
            (lip, rip, rport, state)
            for proto, state, lip, lport, rip, rport in zip(
                self._proto,
                self._state,
                self._local_ip,
                self._local_port,
                self._remote_ip,
                self._remote_port,
                strict=True,
            )
            if proto == tcp and state != listen and port_low <= lport <= port_high and lport not in reserved
        )
        usage: dict[tuple[str, str, int], dict[str, int]] = {}
        for (lip, rip, rport, state), count in counts.items():
            usage.setdefault((self._ips[lip], self._ips[rip], rport), {})[state_name(state)] = count
        return usage

    def in_state(self, state: str, proto: str = "tcp") -> list[Socket]:
        """The sockets of `proto` in `state` (e.g. CLOSE_WAIT ones, to find their owners)."""
        number = STATE_NUMBERS.get(state)
        if number is None:
            number = int(state.removeprefix("UNKNOWN_")) if state.startswith("UNKNOWN_") else -1
        return [self._row(i) for i in self._rows_where(proto, number)]

    def listeners(self) -> list[Socket]:
        """TCP sockets in LISTEN (UDP has no accept queue, so no listen overflow to judge)."""
        return self.in_state("LISTEN", "tcp")


