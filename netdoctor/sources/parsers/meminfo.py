"""Parser for /proc/meminfo: the memory a fix must fit in.

A network diagnosis reads it to judge whether a larger conntrack table, larger socket
buffers or tcp_mem limits fit the host (MemTotal, MemAvailable), and whether socket
memory pressure comes from the host being short of memory at all.

Shape: "Key:   value kB" per line, or "Key: value" without a unit for counts
(HugePages_Total, HugePages_Free, HugePages_Rsvd, HugePages_Surp). Keys vary with the
kernel (KReclaimable from 4.20, FileHugePages from 5.4, Zswap from 5.19, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from netdoctor.errors import ParseError
from netdoctor.sources.parsers import Metric

_SIGNED = re.compile(r"-?[0-9]+")
# "Active(anon)" is the only shape with parentheses; everything else is metric-name safe.
_KEY = re.compile(r"[A-Za-z0-9_]+(\([A-Za-z0-9_]+\))?")
_PARENTHESIZED = re.compile(r"\((.*)\)")
_KERNEL_UNITLESS_KEYS = frozenset({"HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp"})


class Meminfo(dict[str, int]):
    """{kernel key: value}; values in bytes for lines in kB, plain counts for lines without a unit.

    A dict (as the collector expects) that also remembers which keys had no unit, so
    that `meminfo_metrics` names them without `_bytes` as node_exporter does.
    """

    def __init__(self, values: Mapping[str, int] | None = None, unitless: frozenset[str] = frozenset()):
        super().__init__(values or {})
        self.unitless: frozenset[str] = unitless


def parse_meminfo(text: str) -> Meminfo:
    """Parse /proc/meminfo; kB values are converted to bytes (x 1024).

    Raises ParseError on a key without its trailing colon, a line with other than 2 or
    3 columns, a unit other than kB, a non-integer value, or a repeated key.
    """
    values: dict[str, int] = {}
    unitless: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) not in (2, 3):
            raise ParseError(f"line {number}: expected 'Key: value [kB]', got {len(tokens)} columns")
        head, token = tokens[0], tokens[1]
        if not head.endswith(":") or not _KEY.fullmatch(head[:-1]):
            raise ParseError(f"line {number}: expected 'Key:' at the start of the line, got {head!r}")
        key = head[:-1]
        if key in values:
            raise ParseError(f"line {number}: key {key!r} appears twice")
        if not _SIGNED.fullmatch(token):
            raise ParseError(f"line {number}: {key} is not an integer: {token!r}")
        value = int(token)
        if len(tokens) == 3:
            if tokens[2] != "kB":
                raise ParseError(f"line {number}: {key} has unit {tokens[2]!r}, expected 'kB'")
            value *= 1024
        else:
            unitless.add(key)
        values[key] = value
    return Meminfo(values, frozenset(unitless))


def meminfo_metrics(parsed: Mapping[str, int]) -> list[Metric]:
    """Name the values as node_exporter's meminfo collector does.

    `node_memory_<Key>_bytes` for values that had a unit, `node_memory_<Key>` for counts
    (HugePages_*), with "Active(anon)" renamed "Active_anon". For a plain dict (not from
    `parse_meminfo`), the counts are the keys the kernel prints without a unit.
    """
    unitless = parsed.unitless if isinstance(parsed, Meminfo) else _KERNEL_UNITLESS_KEYS
    metrics: list[Metric] = []
    for key, value in parsed.items():
        name = _PARENTHESIZED.sub(r"_\1", key)
        suffix = "" if key in unitless else "_bytes"
        metrics.append((f"node_memory_{name}{suffix}", {}, float(value)))
    return metrics
