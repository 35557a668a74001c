"""Parser for /proc/net/{tcp,tcp6,udp,udp6}: the socket inventory node_exporter does not export.

Why a columnar table: checks ask aggregate questions (how many TIME_WAIT sockets per destination, who holds
the CLOSE_WAIT ones), on hosts that can hold 100k+ sockets. One Python object per socket costs ~0.5 KB and
seconds of CPU; a few `array` columns plus one interned list of distinct addresses cost ~43 bytes a socket.
`Socket` objects are made only when a caller iterates. `SocketTableBuilder` parses a file fed in chunks (the
live reader streams them, see netdoctor.sources.owners); `parse_socket_table` is the same on a whole text.

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

import binascii
import re
import socket as _socket
import struct
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import compress, repeat
from operator import eq, itemgetter

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
_LISTEN = STATE_NUMBERS["LISTEN"]

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


def _packed_keys(layout: tuple[tuple[array, int], ...], count: int) -> array:
    """One native 64-bit int a row, made of the `take` least significant bytes of each column, in order."""
    packed = bytearray(8 * count)
    position = 0
    for column, take in layout:
        raw, size = column.tobytes(), column.itemsize
        for k in range(take):  # k-th least significant byte of the column's items
            packed[position + k :: 8] = raw[(k if _LITTLE_ENDIAN else size - 1 - k) :: size]
        position += take
    keys = array("Q")
    keys.frombytes(packed)
    return keys


def _unpack_key(key: int, layout: tuple[tuple[array, int], ...]) -> tuple[int, ...]:
    raw = key.to_bytes(8, sys.byteorder)
    fields, position = [], 0
    for _column, take in layout:
        fields.append(int.from_bytes(raw[position : position + take], "little"))
        position += take
    return tuple(fields)


_SOCKET_FIELDS = tuple(Socket.__dataclass_fields__)
_ROW_COLUMNS = ("_proto", "_family", "_state", "_local_ip", "_local_port", "_remote_ip", "_remote_port", "_tx",
                "_rx", "_uid", "_inode", "_drops")  # fmt: skip
_STATE_NAMES = [state_name(number) for number in range(256)]


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
        # 32-bit where the kernel's value is (queues print as %08X, uid_t): 12 bytes a row less at 100k+ rows.
        self._tx = array("I")
        self._rx = array("I")
        self._uid = array("I")
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
            first_index = len(merged._ips)
            remap = [merged._intern(ip, ip_index) for ip in table._ips]
            for name in cls.__slots__:
                if name in ("_ips", "_local_ip", "_remote_ip"):
                    continue
                getattr(merged, name).extend(getattr(table, name))
            if remap == list(range(first_index, first_index + len(remap))) and first_index == 0:
                merged._local_ip.extend(table._local_ip)  # indexes unchanged: a memcpy, not a lookup a row
                merged._remote_ip.extend(table._remote_ip)
            else:
                merged._local_ip.extend(map(remap.__getitem__, table._local_ip))
                merged._remote_ip.extend(map(remap.__getitem__, table._remote_ip))
        return merged

    # ------------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self._state)

    def _sockets_at(self, rows: list[int] | None = None) -> Iterator[Socket]:
        """Socket objects for `rows` (all when None), columns zipped at C level.

        Why not `Socket(...)`: a frozen dataclass's __init__ sets each of its 12 fields through
        object.__setattr__ (~2 us a socket); checks iterate 100k+ rows, so the instance dict is filled in one
        update instead (~0.6 us). Same objects: equal, hashable and immutable as if built by __init__.
        """
        columns: list[Iterable[int]] = [getattr(self, name) for name in _ROW_COLUMNS]
        if rows is not None:
            columns = [map(column.__getitem__, rows) for column in columns]  # type: ignore[attr-defined]
        proto, family, state, local_ip, local_port, remote_ip, remote_port, tx, rx, uid, inode, drops = columns
        ips = self._ips
        values = zip(
            map(PROTOS.__getitem__, proto),
            family,
            map(_STATE_NAMES.__getitem__, state),
            map(ips.__getitem__, local_ip),
            local_port,
            map(ips.__getitem__, remote_ip),
            remote_port,
            tx,
            rx,
            uid,
            inode,
            drops,
            strict=True,
        )
        new, names = object.__new__, _SOCKET_FIELDS
        for value in values:
            sock = new(Socket)
            sock.__dict__.update(zip(names, value, strict=True))
            yield sock

    def _row(self, i: int) -> Socket:
        return next(self._sockets_at([i]))

    def __iter__(self) -> Iterator[Socket]:
        return self._sockets_at()

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
        """Row numbers of `proto` (in `state_number`): C-level scans of the columns, Python only per hit."""
        proto_code = _PROTO_CODE[proto]
        protos = self._proto
        if state_number is None:
            return list(compress(range(len(self)), map(eq, protos, repeat(proto_code))))
        if not 0 <= state_number < 256:
            return []
        states, wanted = self._state.tobytes(), bytes((state_number,))
        rows, find = [], states.find
        row = find(wanted)
        while row != -1:  # one bytes.find per hit: a few hits cost microseconds, not a pass in Python
            if protos[row] == proto_code:
                rows.append(row)
            row = find(wanted, row + 1)
        return rows

    def state_counts(self, proto: str = "tcp") -> dict[str, int]:
        """Number of sockets per state name, e.g. {"ESTABLISHED": 120, "TIME_WAIT": 4000}."""
        counts = Counter(compress(self._state, map(eq, self._proto, repeat(_PROTO_CODE[proto]))))
        return {state_name(number): count for number, count in sorted(counts.items())}

    def destination_usage(
        self, port_low: int, port_high: int, reserved: frozenset[int] = frozenset()
    ) -> dict[tuple[str, str, int], dict[str, int]]:
        """(local_ip, remote_ip, remote_port) -> {state: count} over TCP connections using an ephemeral port.

        Why only local ports in [port_low, port_high] minus `reserved`: ephemeral-port exhaustion is about the
        ports connect() may pick for one (source, destination) pair; a socket bound to a fixed port does not
        consume that range. LISTEN sockets have no destination and are left out. The row filter and the
        grouping run as C-level loops over the columns (100k+ rows).
        """
        in_range = self._ephemeral_flags(port_low, port_high, reserved)
        if len(self._ips) <= 1 << 16:
            # One 64-bit key a row (2 bytes per address index, 2 remote port, 1 state, 1 proto) built by
            # byte-strided copies: counting ints is several times cheaper than counting 4-tuples.
            layout = ((self._local_ip, 2), (self._remote_ip, 2), (self._remote_port, 2), (self._state, 1),
                      (self._proto, 1))  # fmt: skip
            counts = Counter(compress(_packed_keys(layout, len(self)), in_range))
            groups = ((_unpack_key(key, layout), count) for key, count in counts.items())
        else:
            columns = (self._local_ip, self._remote_ip, self._remote_port, self._state, self._proto)
            counts_by_row = Counter(zip(*(compress(column, in_range) for column in columns), strict=True))
            groups = iter(counts_by_row.items())
        tcp = _PROTO_CODE["tcp"]
        usage: dict[tuple[str, str, int], dict[str, int]] = {}
        for (lip, rip, rport, state, proto), count in groups:
            if proto == tcp and state != _LISTEN:
                usage.setdefault((self._ips[lip], self._ips[rip], rport), {})[state_name(state)] = count
        return usage

    def _ephemeral_flags(self, low: int, high: int, reserved: frozenset[int]) -> bytearray:
        """1 for each row whose local port is in [low, high] and not reserved, else 0.

        Why this way: one `bytes.translate` classifies every row by the high byte of its port (a block of 256
        ports wholly in, wholly out, or mixed); only rows in a mixed block (the range's two ends, blocks
        holding a reserved port) are decided one by one.
        """
        raw = self._local_port.tobytes()
        high_bytes = raw[1::2] if _LITTLE_ENDIAN else raw[0::2]
        reserved_blocks = {port >> 8 for port in reserved if low <= port <= high}
        classes = bytearray(256)
        for block in range(256):
            first, last = block << 8, block << 8 | 0xFF
            if low <= first and last <= high and block not in reserved_blocks:
                classes[block] = 1
            elif low <= last and first <= high:
                classes[block] = 2
        flags = bytearray(high_bytes.translate(classes))
        if 2 in classes:
            ports, find = self._local_port, flags.find
            row = find(2)
            while row != -1:
                port = ports[row]
                flags[row] = low <= port <= high and port not in reserved
                row = find(2, row + 1)
        return flags

    def in_state(self, state: str, proto: str = "tcp") -> list[Socket]:
        """The sockets of `proto` in `state` (e.g. CLOSE_WAIT ones, to find their owners)."""
        number = STATE_NUMBERS.get(state)
        if number is None:
            number = int(state.removeprefix("UNKNOWN_")) if state.startswith("UNKNOWN_") else -1
        return list(self._sockets_at(self._rows_where(proto, number)))

    def listeners(self) -> list[Socket]:
        """TCP sockets in LISTEN (UDP has no accept queue, so no listen overflow to judge)."""
        return self.in_state("LISTEN", "tcp")


# ---------------------------------------------------------------------- parsing: C-level loops per batch
#
# Why this shape: at 100k+ rows, anything done once per row in Python costs more than the kernel's own text
# formatting. So each batch of complete lines goes through one regex `findall` (3-4 groups a row), and the
# fixed-width part of every row ("LIP:LPORT RIP:RPORT ST TX:RX", all hex) is joined, stripped of its
# separators and hex-decoded in one call into fixed-size binary records. Columns are then cut out of those
# records with strided slice assignments (memcpy-like, no per-row objects); addresses are converted to text
# once per distinct value. Validation is not lost: the regex checks the row's shape, the separator positions
# are compared column-wise, `unhexlify` rejects non-hex digits, and any failure re-checks the batch line by
# line (slowly, only then) to name the first bad line.

_BATCH_BYTES = 1 << 18  # ~1,700 rows: bounded temporaries, and a short tail when a stream ends
_HEX_WIDTH = {4: 8, 6: 32}  # hex digits of one address
_ROW_TAIL = rb" [0-9A-Fa-f]{2}:[0-9A-Fa-f]+ +[0-9A-Fa-f]+ +(\d+) +-?\d+ +(\d+)"
_UDP_TAIL = rb" +-?\d+ +\S+ +(-?\d+)"


def _row_pattern(proto: str, family: int) -> re.Pattern[bytes]:
    width = 2 * _HEX_WIDTH[family] + 32  # "LIP:LPORT RIP:RPORT ST TX:RX"
    tail = _ROW_TAIL + (_UDP_TAIL if proto == "udp" else b"")
    return re.compile(rb"^ *\d+: (.{%d})" % width + tail + rb"(?: .*)?$", re.MULTILINE)


_ROW_PATTERNS = {(proto, family): _row_pattern(proto, family) for proto in PROTOS for family in (4, 6)}


def _separators(family: int) -> tuple[tuple[int, bytes], ...]:
    """Offsets of ':' and ' ' inside the fixed-width part of a row."""
    a = _HEX_WIDTH[family]
    return ((a, b":"), (a + 5, b" "), (2 * a + 6, b":"), (2 * a + 11, b" "), (2 * a + 14, b" "), (2 * a + 23, b":"))


_SEPARATORS = {family: _separators(family) for family in (4, 6)}


def _number_column(records: bytes, record_size: int, offset: int, size: int, typecode: str) -> array:
    """Column of the big-endian `size`-byte numbers at `offset` of each record, as native `typecode` items."""
    count = len(records) // record_size
    column = array(typecode)
    width = column.itemsize
    native = bytearray(count * width)
    for k in range(size):  # byte k of the printed (most significant first) number
        target = size - 1 - k if _LITTLE_ENDIAN else width - size + k
        native[target::width] = records[offset + k :: record_size]
    column.frombytes(native)
    return column


def _address_keys(records: bytes, record_size: int, offset: int, family: int) -> list[int] | list[bytes]:
    """One hashable key per row for the address at `offset`: its network-order bytes (v6) or their int (v4).

    /proc prints each 32-bit word of the address as the number it is in host memory, so a word's bytes in
    network order are its native representation: the same byte shuffle as for numbers, per word.
    """
    if family == 4:
        return list(_number_column(records, record_size, offset, 4, "I"))
    count = len(records) // record_size
    network = bytearray(count * 16)
    for word in range(4):
        for k in range(4):
            target = 4 * word + (3 - k if _LITTLE_ENDIAN else k)
            network[target::16] = records[offset + 4 * word + k :: record_size]
    return list(map(itemgetter(0), struct.iter_unpack("16s", network)))


def _address_text(key: int | bytes, family: int) -> str:
    if family == 4:
        assert isinstance(key, int)
        return _socket.inet_ntop(_socket.AF_INET, key.to_bytes(4, sys.byteorder))
    assert isinstance(key, bytes)
    return _socket.inet_ntop(_socket.AF_INET6, key)


def _first_bad_line(block: bytes, first_line_number: int, proto: str, family: int) -> ParseError:
    """The slow, exact check, run only once a batch failed: name the first line that is not a row."""
    name = f"{proto}{'6' if family == 6 else ''}"
    lines = block.split(b"\n")
    if block.endswith(b"\n"):
        lines.pop()
    width = _HEX_WIDTH[family]
    for offset, raw in enumerate(lines):
        line = raw.decode("utf-8", "replace")
        match = _ROW.fullmatch(line)
        problem = None
        if match is None:
            problem = f"not a /proc/net/{name} row"
        elif len(match[1]) != width or len(match[3]) != width:
            problem = f"address is not {width} hex digits (IPv{family})"
        elif proto == "udp" and match[10] is None:
            problem = "UDP row without the drops column"
        elif int(match[8]) >= 1 << 32:
            problem = "uid beyond 32 bits"
        elif int(match[9]) >= 1 << 64:
            problem = "inode beyond 64 bits"
        elif proto == "udp" and not -(1 << 63) <= int(match[10]) < 1 << 63:
            problem = "drops beyond 64 bits"
        if problem:
            return ParseError(f"line {first_line_number + offset}: {problem}: {line[:80]!r}")
    last = first_line_number + max(len(lines), 1) - 1
    return ParseError(f"lines {first_line_number}-{last}: rows that do not parse")


class SocketTableBuilder:
    """Parses one of /proc/net/{tcp,tcp6,udp,udp6} fed as byte chunks of any size; `finish()` gives the table.

    Why incremental: the live reader feeds each chunk while the kernel formats the next one (on another CPU),
    so parsing overlaps reading instead of following it. Pure: no I/O. The first ParseError is raised by the
    `feed` or `finish` call that meets it; after that the builder refuses more input.
    """

    __slots__ = ("proto", "family", "_table", "_ip_index", "_pending", "_pending_size", "_line", "_error")

    def __init__(self, proto: str, family: int) -> None:
        if proto not in _PROTO_CODE or family not in (4, 6):
            raise ValueError(f"proto must be tcp/udp and family 4/6, not {proto!r}/{family!r}")
        self.proto = proto
        self.family = family
        self._table = SocketTable()
        self._ip_index: dict[int | bytes, int] = {}
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._line = 1  # number of the next line to parse; 1 = the header is still to come
        self._error: ParseError | None = None

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the file; complete lines are parsed once a batch's worth has arrived."""
        if self._error is not None:
            raise self._error
        if chunk:
            self._pending.append(chunk)
            self._pending_size += len(chunk)
            if self._pending_size >= _BATCH_BYTES:
                self._guard(self._drain, False)

    def finish(self) -> SocketTable:
        """Parse what is left (a last line may lack its newline) and hand over the table."""
        if self._error is not None:
            raise self._error
        self._guard(self._drain, True)
        return self._table

    def _guard(self, step: Callable[[bool], None], final: bool) -> None:
        try:
            step(final)
        except ParseError as error:
            self._error = error
            self._pending = []
            raise

    def _drain(self, final: bool) -> None:
        data = b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        if self._line == 1:
            header_end = data.find(b"\n")
            if header_end == -1 and not final:
                self._pending, self._pending_size = [data], len(data)
                return
            header = data if header_end == -1 else data[:header_end]
            if not _HEADER.match(header.decode("utf-8", "replace")):
                raise ParseError("line 1: missing the 'sl local_address ...' header")
            data = b"" if header_end == -1 else data[header_end + 1 :]
            self._line = 2
        if final:
            if data.strip(b"\n") == b"":
                return  # a capture tool's trailing blank lines: not rows
            if data.endswith(b"\n\n"):
                data = data.rstrip(b"\n") + b"\n"
            rest = b""
        else:
            # Complete lines only; trailing blank lines wait, in case they are the file's last ones.
            cut = len(data.rstrip(b"\n")) + 1 if data.endswith(b"\n") else data.rfind(b"\n") + 1
            data, rest = data[:cut], data[cut:]
        position = 0
        while position < len(data):
            cut = data.find(b"\n", position + _BATCH_BYTES)
            cut = len(data) if cut == -1 else cut + 1
            self._parse_block(data[position:cut])
            position = cut
        if rest:
            self._pending, self._pending_size = [rest], len(rest)

    def _parse_block(self, block: bytes) -> None:
        first_line = self._line
        lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
        self._line += lines
        rows = _ROW_PATTERNS[self.proto, self.family].findall(block)
        if len(rows) != lines:
            raise _first_bad_line(block, first_line, self.proto, self.family)
        try:
            self._append(rows)
        except (ValueError, OverflowError):  # bad separators / hex digits, numbers beyond their column
            raise _first_bad_line(block, first_line, self.proto, self.family) from None

    def _append(self, rows: list[tuple[bytes, ...]]) -> None:
        columns = list(zip(*rows, strict=True))
        count = len(rows)
        fixed = b"".join(columns[0])
        width = len(fixed) // count
        for offset, separator in _SEPARATORS[self.family]:
            if fixed[offset::width] != separator * count:
                raise ValueError("separator out of place")
        records = binascii.unhexlify(fixed.translate(None, b": "))
        half = _HEX_WIDTH[self.family] // 2  # bytes of one address
        size = 2 * half + 13
        if len(records) != count * size:
            raise ValueError("fixed-width fields of the wrong width")
        table, family = self._table, self.family
        # Numbers first (they may still fail), so a failure leaves the columns the same length.
        local_port = _number_column(records, size, half, 2, "H")
        remote_port = _number_column(records, size, 2 * half + 2, 2, "H")
        state = _number_column(records, size, 2 * half + 4, 1, "B")
        tx = _number_column(records, size, 2 * half + 5, 4, "I")
        rx = _number_column(records, size, 2 * half + 9, 4, "I")
        uid = array("I", map(int, columns[1]))
        inode = array("Q", map(int, columns[2]))
        drops = array("q", map(int, columns[3])) if self.proto == "udp" else array("q", bytes(8 * count))
        local_keys = _address_keys(records, size, 0, family)
        remote_keys = _address_keys(records, size, half + 2, family)
        index = self._ip_index
        for key in {*local_keys, *remote_keys}.difference(index):
            index[key] = len(table._ips)
            table._ips.append(_address_text(key, family))
        table._proto.frombytes(bytes((_PROTO_CODE[self.proto],)) * count)
        table._family.frombytes(bytes((family,)) * count)
        table._state.extend(state)
        table._local_ip.extend(map(index.__getitem__, local_keys))
        table._local_port.extend(local_port)
        table._remote_ip.extend(map(index.__getitem__, remote_keys))
        table._remote_port.extend(remote_port)
        table._tx.extend(tx)
        table._rx.extend(rx)
        table._uid.extend(uid)
        table._inode.extend(inode)
        table._drops.extend(drops)


def parse_socket_table(text: str, proto: str, family: int) -> SocketTable:
    """Parse one of /proc/net/{tcp,tcp6,udp,udp6} (`proto` "tcp"/"udp", `family` 4/6).

    Raises ParseError("line N: ...") when the header is missing or a row does not have the kernel's shape
    (missing columns, non-hex fields, an address width that does not match `family`). Blank lines are rows
    that do not parse, except for trailing ones.
    """
    builder = SocketTableBuilder(proto, family)
    builder.feed(text.encode("utf-8", "surrogatepass"))
    return builder.finish()
