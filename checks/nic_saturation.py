"""Is an interface running at its link speed? (rx and tx judged separately: full duplex)

Throughput is `rate(node_network_{receive,transmit}_bytes_total)` in bytes/s held against
`node_network_speed_bytes`, which is also bytes/s — the seed's `* 8` compared bits with
bytes and read 8x too high.

Thresholds (all overridable):
- `warn_ratio` = 0.90: a direction above 90% of link speed is a WARNING [netdata
  net.conf 1m_received_traffic_overflow / 1m_sent_traffic_overflow: warn > 90%].
- `crit_ratio` = 0.98: above 98% is CRITICAL (netdoctor's choice: no anchor has a
  critical level; at 98% the link has no headroom left for bursts, so the NIC's tx
  queue or the switch port is dropping).
- `exclude_iface` = VIRTUAL_IFACE_REGEX (lo, veth*, br-*, docker*, virbr*, cali*,
  flannel*, cni*, tun*, tap*): virtual interfaces have no physical speed to saturate.

An interface whose speed is unknown (metric absent, -1 in sysfs, negative in older
node_exporter, or 0) is not judged and named as such in the summary; if no interface
at all has a known speed the check cannot judge. The speed comes from the series,
else from the inventory's NicInfo.speed_bytes (live/capture).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from netdoctor.checks._common import (
    VIRTUAL_IFACE_REGEX,
    by_label,
    evidence,
    iface_filter,
    magnitude,
    pct,
    settings,
    severity_for,
    usable,
)

from netdoctor.causes import NIC_LINE_RATE
from netdoctor.model import Entity, EntityKind, Finding
from netdoctor.view import View

ID = "nic_saturation"
TITLE = "Interface at line rate"
RX_BYTES = "node_network_receive_bytes_total"
TX_BYTES = "node_network_transmit_bytes_total"
SPEED = "node_network_speed_bytes"
NEEDS = [RX_BYTES, TX_BYTES, SPEED]
INVENTORY = ["nics"]
THRESHOLDS: dict[str, Any] = {
    "warn_ratio": 0.90,
    "crit_ratio": 0.98,
    "exclude_iface": VIRTUAL_IFACE_REGEX,
}


def _bits(bytes_per_s: float) -> str:
    """Link speeds are spoken in bits: 1.25e9 bytes/s -> "10 Gbit/s"."""
    bits = bytes_per_s * 8
    for unit, size in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits >= size:
            return f"{bits / size:.3g} {unit}"
    return f"{bits:.0f} bit/s"


def _speeds(view: View) -> dict[str, float]:
    """Known link speeds in bytes/s per device; unknown (<= 0, NaN) speeds are left out."""
    speeds = {dev: v for dev, v in by_label(view.gauge(SPEED), "device").items() if v > 0}
    if view.inventory is not None:
        for name, nic in view.inventory.nics.items():
            if name not in speeds and usable(nic.speed_bytes) and nic.speed_bytes:
                speeds[name] = float(nic.speed_bytes)
    return speeds


def run(view: View, thresholds: Mapping[str, Any]) -> list[Finding]:
    limits = settings(THRESHOLDS, thresholds)
    warn, crit = float(limits["warn_ratio"]), float(limits["crit_ratio"])
    excluded = iface_filter(str(limits["exclude_iface"]))

    why = view.missing(RX_BYTES, TX_BYTES)
    if why:
        return [Finding.cannot_judge(ID, why)]
    rates = {"rx": by_label(view.rate(RX_BYTES), "device"), "tx": by_label(view.rate(TX_BYTES), "device")}
    devices = sorted({d for per_dir in rates.values() for d in per_dir if not excluded.match(d)})
    if not devices:
        return [Finding.cannot_judge(ID, "no non-virtual interface had a byte rate over the window")]
    speeds = _speeds(view)
    judged = [d for d in devices if d in speeds]
    unknown = [d for d in devices if d not in speeds]
    if not judged:
        reason = view.why_missing(SPEED) if not view.has(SPEED) else "every interface reports speed -1/0"
        names = ", ".join(unknown) or "none"
        return [Finding.cannot_judge(ID, f"no interface has a known link speed ({reason}; seen: {names})")]

    findings: list[Finding] = []
    busiest: tuple[float, str, str] = (-1.0, "", "")
    for device in judged:
        speed = speeds[device]
        for direction, per_dir in rates.items():
            if device not in per_dir:
                continue
            ratio = per_dir[device] / speed
            busiest = max(busiest, (ratio, device, direction))
            severity = severity_for(ratio, warn, crit)
            if severity is None:
                continue
            metric = RX_BYTES if direction == "rx" else TX_BYTES
            findings.append(
                Finding(
                    check=ID,
                    severity=severity,
                    summary=(
                        f"{device} {direction} at {pct(ratio)} of its {_bits(speed)} link "
                        f"({_bits(per_dir[device])}); threshold {pct(warn)}"
                    ),
                    entity=Entity(EntityKind.INTERFACE, device),
                    magnitude=magnitude(ratio, warn),
                    evidence=[
                        evidence(
                            view,
                            metric,
                            per_dir[device],
                            labels={"device": device},
                            threshold=warn * speed,
                            unit="B/s",
                        ),
                        evidence(view, SPEED, speed, labels={"device": device}, unit="B/s"),
                        evidence(
                            view,
                            "link_utilisation",
                            ratio,
                            labels={"device": device, "direction": direction},
                            threshold=warn,
                            note=f"{direction} bytes / link speed",
                        ),
                    ],
                    tags=[NIC_LINE_RATE],
                )
            )
    if findings:
        return findings

    ratio, device, direction = busiest
    summary = f"no interface above {pct(warn)} of link speed"
    if device:
        summary += f"; busiest {device} {direction} at {pct(ratio)} of {_bits(speeds[device])}"
    if unknown:
        summary += f"; not judged (speed unknown): {', '.join(unknown)}"
    proof = [evidence(view, SPEED, speeds[d], labels={"device": d}, unit="B/s") for d in judged]
    return [Finding.healthy(ID, summary, proof)]
