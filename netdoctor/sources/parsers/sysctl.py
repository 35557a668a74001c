"""Parse single-value kernel files: sysctls, CPU lists and CPU masks.

These files are tiny but their formats trip people up: `ip_local_port_range` is two
numbers separated by a tab, `ip_local_reserved_ports` is a comma list of ports and
ranges (often empty), `smp_affinity_list` is a CPU *list* ("0-3,8") while
`smp_affinity` and `rps_cpus` are hex *masks* printed as comma-separated 32-bit
groups, most significant group first ("00000000,0000000f"). A check that gets any
of these wrong pins IRQs to the wrong CPUs, so each has one careful parser here.
"""

from __future__ import annotations

import re

from netdoctor.errors import ParseError

MAX_PORT = 65535
# NR_CPUS is at most 8192 on every architecture Linux ships; a larger id is garbage,
# and refusing it keeps a corrupt "0-4000000000" from allocating gigabytes.
MAX_CPU_ID = 65535

_INT = re.compile(r"[+-]?[0-9]+")
_DIGITS = re.compile(r"[0-9]+")
_HEX_GROUP = re.compile(r"[0-9a-fA-F]{1,8}")


def _one_line(text: str, what: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        raise ParseError(f"line 2: {what} has more than one line")
    return lines[0].strip() if lines else ""


def parse_int(text: str) -> int:
    """A sysctl or sysfs integer ("262144\\n", "-1")."""
    value = _one_line(text, "integer file")
    if not _INT.fullmatch(value):
        raise ParseError(f"line 1: {value!r} is not an integer")
    return int(value)


def parse_port_range(text: str) -> tuple[int, int]:
    """net.ipv4.ip_local_port_range: "32768\\t60999" -> (32768, 60999); low <= high enforced."""
    fields = _one_line(text, "port range").split()
    if len(fields) != 2 or not all(_INT.fullmatch(field) for field in fields):
        raise ParseError(f"line 1: expected two port numbers, got {text.strip()!r}")
    low, high = int(fields[0]), int(fields[1])
    for port in (low, high):
        if not 0 <= port <= MAX_PORT:
            raise ParseError(f"line 1: port {port} outside 0-{MAX_PORT}")
    if low > high:
        raise ParseError(f"line 1: port range {low}-{high} has low > high")
    return low, high


def _ranges(text: str, what: str, limit: int) -> list[tuple[int, int]]:
    """A kernel list "a,b-c,..." as (low, high) pairs; empty text is an empty list."""
    value = _one_line(text, what)
    if not value:
        return []
    ranges: list[tuple[int, int]] = []
    for item in value.split(","):
        item = item.strip()
        low_text, dash, high_text = item.partition("-")
        if not _DIGITS.fullmatch(low_text) or (dash and not _DIGITS.fullmatch(high_text)):
            raise ParseError(f"line 1: {item!r} in {what} is not N or N-M")
        low = int(low_text)
        high = int(high_text) if dash else low
        if low > high:
            raise ParseError(f"line 1: range {item!r} in {what} has low > high")
        if high > limit:
            raise ParseError(f"line 1: {high} in {what} is above {limit}")
        ranges.append((low, high))
    return ranges


def parse_port_list(text: str) -> list[int]:
    """net.ipv4.ip_local_reserved_ports: "8080,9000-9010" -> [8080, 9000, ..., 9010]; "" -> []."""
    ports: set[int] = set()
    for low, high in _ranges(text, "port list", MAX_PORT):
        ports.update(range(low, high + 1))
    return sorted(ports)


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """/proc/irq/N/smp_affinity_list: "0-3,8,10-11" -> (0, 1, 2, 3, 8, 10, 11)."""
    cpus: set[int] = set()
    for low, high in _ranges(text, "CPU list", MAX_CPU_ID):
        cpus.update(range(low, high + 1))
    return tuple(sorted(cpus))


def parse_cpu_mask(text: str) -> tuple[int, ...]:
    """rps_cpus / smp_affinity: hex mask in 32-bit groups, most significant first.

    "00000000,0000000f" -> (0, 1, 2, 3); "3" -> (0, 1); "0" -> () (RPS off).
    """
    value = _one_line(text, "CPU mask")
    if not value:
        raise ParseError("line 1: empty CPU mask")
    groups = value.split(",")
    if len(groups) * 32 > MAX_CPU_ID + 1:
        raise ParseError(f"line 1: CPU mask has {len(groups)} groups, more than any kernel prints")
    cpus: list[int] = []
    for position, group in enumerate(reversed(groups)):
        if not _HEX_GROUP.fullmatch(group):
            raise ParseError(f"line 1: {group!r} in CPU mask is not a 32-bit hex group")
        bits = int(group, 16)
        base = position * 32
        cpus.extend(base + bit for bit in range(32) if bits >> bit & 1)
    return tuple(sorted(cpus))
