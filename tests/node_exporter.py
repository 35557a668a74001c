"""Run the real node_exporter binary over a procfs/sysfs tree and read its metrics.

Used by the differential tests: every series netdoctor reads that node_exporter also
exposes must have the same value.
"""

from __future__ import annotations

import socket
import subprocess
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from netdoctor.sources.parsers import Metric
from tests.conftest import require_binary, stop_process, wait_until_serving

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# The node_exporter collectors that together expose every series netdoctor's live source builds, and the
# flags that make them expose all of it: every netstat field, and netdev read from /proc/net/dev (as
# netdoctor reads it) rather than over netlink.
LIVE_SOURCE_COLLECTORS = (
    "netdev",
    "netstat",
    "sockstat",
    "softnet",
    "conntrack",
    "cpu",
    "stat",
    "netclass",
    "interrupts",
    "meminfo",
)
LIVE_SOURCE_ARGS = ("--collector.netstat.fields=.*", "--no-collector.netdev.netlink")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def series_of(metrics: Iterable[Metric]) -> Series:
    """netdoctor's metric triples keyed like `scrape`'s series; a series produced twice fails the test."""
    series: Series = {}
    for name, labels, value in metrics:
        key = (name, tuple(sorted(labels.items())))
        assert key not in series, f"we produce {key} twice"
        series[key] = value
    return series


def parse_exposition(text: str) -> Series:
    """Prometheus text format -> {(name, sorted labels): value}. Enough for node_exporter's output."""
    series: Series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            labels_text, value_text = rest.rsplit("}", 1)
            labels = _parse_labels(labels_text)
        else:
            name, value_text = line.split(" ", 1)
            labels = ()
        series[(name, labels)] = float(value_text.split()[0])
    return series


def _parse_labels(text: str) -> tuple[tuple[str, str], ...]:
    labels: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        eq = text.index("=", i)
        key = text[i:eq].strip().lstrip(",").strip()
        assert text[eq + 1] == '"'
        j = eq + 2
        value_chars: list[str] = []
        while text[j] != '"':
            if text[j] == "\\":
                j += 1
                value_chars.append({"n": "\n", "\\": "\\", '"': '"'}.get(text[j], text[j]))
            else:
                value_chars.append(text[j])
            j += 1
        labels.append((key, "".join(value_chars)))
        i = j + 1
        while i < len(text) and text[i] in ", ":
            i += 1
    return tuple(sorted(labels))


@contextmanager
def node_exporter(
    collectors: Sequence[str],
    procfs: Path | str = "/proc",
    sysfs: Path | str = "/sys",
    extra_args: Sequence[str] = (),
) -> Iterator[str]:
    """Start node_exporter on loopback with only `collectors` enabled; yield its /metrics URL."""
    binary = require_binary("prometheus-node-exporter", "node_exporter")
    port = free_port()
    args = [
        binary,
        f"--web.listen-address=127.0.0.1:{port}",
        f"--path.procfs={procfs}",
        f"--path.sysfs={sysfs}",
        "--collector.disable-defaults",
        *[f"--collector.{name}" for name in collectors],
        *extra_args,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until_serving(proc, url, 10, lambda: proc.stderr.read() if proc.stderr else "")
        yield url
    finally:
        stop_process(proc, 5)


def scrape(url: str) -> Series:
    with urllib.request.urlopen(url, timeout=10) as response:
        return parse_exposition(response.read().decode())
