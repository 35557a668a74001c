"""Name /sys/class/net/IFACE attributes and statistics the way node_exporter does.

Why: link speed (for saturation), operstate and carrier changes (for flapping) and
the detailed error counters (CRC, missed, over, fifo...) that /proc/net/dev folds
into a few columns are only in sysfs.

`attrs` maps a sysfs file name to its text; a missing key means the file could not
be read (the kernel answers EINVAL for `speed` and `duplex` on a link that is down,
and for `name_assign_type` on some virtual devices) and, as in node_exporter, that
series is then absent. Numbers are decimal except `flags` and `dev_id`, which the
kernel prints as hex ("0x1003").
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from netdoctor.errors import ParseError
from netdoctor.sources.parsers import Metric

# node_exporter netclass series name (without node_network_) <- sysfs file, in its order.
_NUMERIC_ATTRS = (
    ("address_assign_type", "addr_assign_type"),
    ("carrier", "carrier"),
    ("carrier_changes_total", "carrier_changes"),
    ("carrier_up_changes_total", "carrier_up_count"),
    ("carrier_down_changes_total", "carrier_down_count"),
    ("device_id", "dev_id"),
    ("dormant", "dormant"),
    ("flags", "flags"),
    ("iface_id", "ifindex"),
    ("iface_link", "iflink"),
    ("iface_link_mode", "link_mode"),
    ("mtu_bytes", "mtu"),
    ("name_assign_type", "name_assign_type"),
    ("net_dev_group", "netdev_group"),
    ("transmit_queue_length", "tx_queue_len"),
    ("protocol_type", "type"),
)
_HEX_ATTRS = frozenset({"flags", "dev_id"})
_INFO_LABELS = (
    ("address", "address"),
    ("broadcast", "broadcast"),
    ("duplex", "duplex"),
    ("ifalias", "ifalias"),
)

# The detailed counters of struct rtnl_link_stats64 that /proc/net/dev does not show
# on their own, named as node_exporter's netdev collector names them with
# --collector.netdev.enable-detailed-metrics (netdev_common.go): statistics file -> series.
_DETAILED_STATS = (
    ("rx_crc_errors", "node_network_receive_crc_errors_total"),
    ("rx_missed_errors", "node_network_receive_missed_errors_total"),
    ("rx_frame_errors", "node_network_receive_frame_errors_total"),
    ("rx_fifo_errors", "node_network_receive_fifo_errors_total"),
    ("rx_over_errors", "node_network_receive_over_errors_total"),
    ("rx_length_errors", "node_network_receive_length_errors_total"),
    ("rx_nohandler", "node_network_receive_nohandler_total"),
    ("tx_aborted_errors", "node_network_transmit_aborted_errors_total"),
    ("tx_carrier_errors", "node_network_transmit_carrier_errors_total"),
    ("tx_fifo_errors", "node_network_transmit_fifo_errors_total"),
    ("tx_heartbeat_errors", "node_network_transmit_heartbeat_errors_total"),
    ("tx_window_errors", "node_network_transmit_window_errors_total"),
)
_DECIMAL = re.compile(r"-?[0-9]+")
_HEX = re.compile(r"(0x)?[0-9a-fA-F]+")


def _value(name: str, text: str) -> int:
    value = text.strip()
    if name in _HEX_ATTRS:
        if not _HEX.fullmatch(value):
            raise ParseError(f"line 1: {name} is {value!r}, not a hex number")
        return int(value, 16)
    if not _DECIMAL.fullmatch(value):
        raise ParseError(f"line 1: {name} is {value!r}, not a number")
    return int(value)


def netclass_metrics(iface: str, attrs: Mapping[str, str]) -> list[Metric]:
    """node_exporter's netclass series for one interface.

    `node_network_up` is 1 only for operstate "up" and, like `node_network_info`, is
    always present. `node_network_speed_bytes` is Mb/s * 125000 (bytes/s) and absent
    when the speed is unknown (-1 or unreadable): node_exporter 1.5.0 still exports
    -125000 for -1 unless run with --collector.netclass.ignore-invalid-speed (the
    default from 2.x), which is the behaviour netdoctor follows.
    """
    device = {"device": iface}
    operstate = attrs.get("operstate", "").strip()
    info_labels = {label: attrs.get(name, "").strip() for label, name in _INFO_LABELS}
    metrics: list[Metric] = [
        ("node_network_up", dict(device), 1.0 if operstate == "up" else 0.0),
        ("node_network_info", {**device, **info_labels, "operstate": operstate}, 1.0),
    ]
    for series, name in _NUMERIC_ATTRS:
        if name in attrs:
            metrics.append((f"node_network_{series}", dict(device), float(_value(name, attrs[name]))))
    if "speed" in attrs:
        speed = _value("speed", attrs["speed"])
        if speed >= 0:
            metrics.append(("node_network_speed_bytes", dict(device), float(speed * 125000)))
    return metrics


def netstats_metrics(iface: str, stats: Mapping[str, str]) -> list[Metric]:
    """Detailed error counters from /sys/class/net/IFACE/statistics/*.

    Only the counters /proc/net/dev folds together (its `frame` column is
    length+over+crc+frame, `drop` is dropped+missed, `carrier` is
    carrier+aborted+window+heartbeat); bytes, packets, errors, dropped, multicast,
    collisions and compressed are already there and are skipped.
    """
    metrics: list[Metric] = []
    for name, series in _DETAILED_STATS:
        if name in stats:
            value = _value(name, stats[name])
            if value < 0:
                raise ParseError(f"line 1: statistics/{name} is negative ({value})")
            metrics.append((series, {"device": iface}, float(value)))
    return metrics
