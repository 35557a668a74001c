"""Are interfaces erroring, dropping, overrunning their rings or flapping?

Per interface, over the window (counters from /proc/net/dev for every interface, and
from sysfs statistics / netclass for physical NICs):

- NIC_ERRORS: rx or tx `errs` above `warn_error_ratio` = 1% of packets [node-mixin
  NodeNetworkReceiveErrs / NodeNetworkTransmitErrs: errs/packets > 1%]; CRITICAL above
  `crit_error_ratio` = 5% (netdoctor's choice: no anchor has a critical level). Any rise
  of crc/frame errors (`crc_frame_per_s` = 0) is at least a WARNING even below 1%: a
  healthy link has none, so they point at the cable, optic or duplex (THRESHOLDS.md:
  "a sustained rise of crc/frame errors"; two samples cannot tell "sustained").
  Errors have no minimum-packet guard (node-mixin has none; it waits 1h instead).
  With no packets at all, the ratio counts every errored frame as 100%.
- NIC_DROPS: rx or tx drops >= `warn_drop_ratio` = 2% of packets, judged only with at
  least `drop_min_packets` = 10,000 packets in the window [netdata net.conf
  inbound_packets_dropped_ratio: >= 2% over 10m with > 10k packets]; CRITICAL at
  `crit_drop_ratio` = 10% (netdoctor's choice). The guard counts packets + drops, so an
  interface dropping everything it receives (0 packets counted) is still judged.
  node_exporter's receive_drop already includes rx_missed_errors (the kernel folds
  them), so a full ring shows here too.
- RING_OVERFLOW: any rise (`ring_overflow_per_s` = 0) of rx_missed_errors, rx fifo or
  rx over errors, or tx fifo errors: the NIC ring had no free descriptor. WARNING; the
  fix "ring" proposes the inventory's rx_max when the current ring is smaller.
- NIC_FLAPPING: more than `flap_changes` = 0 carrier changes in the window
  (`node_network_carrier_changes_total`; THRESHOLDS.md "carrier changes during the
  window"; kube-prometheus alerts on changes(node_network_up[2m]) > 2). WARNING.

`exclude_iface` = "^lo$": only loopback is excluded — unlike nic_saturation, errors and
drops on veth, bridges and tunnels are real (a veth tx drop is a packet the container
never got).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from netdoctor.checks._common import (
    by_label,
    evidence,
    iface_filter,
    magnitude,
    pct,
    per_s,
    seconds,
    settings,
    severity_for,
)

from netdoctor.causes import NIC_DROPS, NIC_ERRORS, NIC_FLAPPING, RING_OVERFLOW
from netdoctor.model import Entity, EntityKind, Evidence, Finding, FixSuggestion, Severity
from netdoctor.view import View

ID = "nic_errors"
TITLE = "Interface errors, drops, ring overflows and flapping"
NET = "node_network_"
PACKETS = {"rx": f"{NET}receive_packets_total", "tx": f"{NET}transmit_packets_total"}
ERRS = {"rx": f"{NET}receive_errs_total", "tx": f"{NET}transmit_errs_total"}
DROPS = {"rx": f"{NET}receive_drop_total", "tx": f"{NET}transmit_drop_total"}
CRC_FRAME = [
    f"{NET}receive_crc_errors_total",
    f"{NET}receive_frame_errors_total",
    f"{NET}receive_frame_total",
]
RING = [
    f"{NET}receive_missed_errors_total",
    f"{NET}receive_fifo_total",
    f"{NET}receive_over_errors_total",
    f"{NET}transmit_fifo_total",
]
CARRIER = f"{NET}carrier_changes_total"
REQUIRED = [*PACKETS.values(), *ERRS.values(), *DROPS.values()]
NEEDS = [*REQUIRED, *CRC_FRAME, *RING, CARRIER]
INVENTORY = ["nics"]
THRESHOLDS: dict[str, Any] = {
    "warn_error_ratio": 0.01,
    "crit_error_ratio": 0.05,
    "crc_frame_per_s": 0.0,
    "warn_drop_ratio": 0.02,
    "crit_drop_ratio": 0.10,
    "drop_min_packets": 10_000,
    "ring_overflow_per_s": 0.0,
    "flap_changes": 0,
    "exclude_iface": "^lo$",
}


def _ratio(bad: float, packets: float) -> float:
    return bad / packets if packets > 0 else (1.0 if bad > 0 else 0.0)


def _finding(
    device: str, severity: Severity, summary: str, tag: str, mag: float, ev: list[Evidence]
) -> Finding:
    return Finding(
        check=ID,
        severity=severity,
        summary=f"{device}: {summary}",
        entity=Entity(EntityKind.INTERFACE, device),
        magnitude=mag,
        evidence=ev,
        tags=[tag],
    )


def _ring_fix(view: View, device: str) -> list[FixSuggestion]:
    nic = view.inventory.nics.get(device) if view.inventory is not None else None
    rings = nic.rings if nic is not None else None
    if not rings or not rings.get("rx") or not rings.get("rx_max") or rings["rx"] >= rings["rx_max"]:
        return []
    current, largest = rings["rx"], rings["rx_max"]
    return [
        FixSuggestion(
            fix_id="ring",
            summary=f"raise {device} rx ring {current} -> {largest} descriptors (its maximum)",
            command=f"netdoctor fix --ring {device} --rx {largest}",
            params={"interface": device, "rx": largest, "current_rx": current, "rx_max": largest},
        )
    ]


def _judge(
    view: View, device: str, r: Mapping[str, dict[str, float]], limits: Mapping[str, Any]
) -> list[Finding]:
    """Every finding for one interface; `r` maps metric name -> {device: rate}."""
    window = view.interval_s or 0.0
    out: list[Finding] = []
    rates = {m: per_dev[device] for m, per_dev in r.items() if device in per_dev}
    labels = {"device": device}
    for direction in ("rx", "tx"):
        packets = rates.get(PACKETS[direction], 0.0)
        errs, drops = rates.get(ERRS[direction], 0.0), rates.get(DROPS[direction], 0.0)
        warn, crit = float(limits["warn_error_ratio"]), float(limits["crit_error_ratio"])
        crc = sum(rates.get(m, 0.0) for m in CRC_FRAME[:2]) if direction == "rx" else 0.0
        crc = crc or (rates.get(CRC_FRAME[2], 0.0) if direction == "rx" else 0.0)
        ratio = _ratio(errs, packets)
        severity = severity_for(ratio, warn, crit)
        if severity is None and crc > float(limits["crc_frame_per_s"]):
            severity = Severity.WARNING
        if severity is not None:
            ev = [
                evidence(view, ERRS[direction], errs, labels=labels, unit="/s"),
                evidence(view, PACKETS[direction], packets, labels=labels, unit="/s"),
                evidence(view, f"{direction}_error_ratio", ratio, labels=labels, threshold=warn),
            ]
            text = f"{direction} errors {per_s(errs)} = {pct(ratio)} of packets (threshold {pct(warn)})"
            if crc > 0:
                ev.append(evidence(view, "receive_crc_frame_errors", crc, labels=labels, unit="/s"))
                text += f"; crc/frame errors {per_s(crc)}: check cable, optic, duplex"
            out.append(_finding(device, severity, text, NIC_ERRORS, magnitude(ratio, warn), ev))

        warn, crit = float(limits["warn_drop_ratio"]), float(limits["crit_drop_ratio"])
        ratio = _ratio(drops, packets)
        severity = severity_for(ratio, warn, crit, strict=False)
        if severity is not None and (packets + drops) * window >= float(limits["drop_min_packets"]):
            ev = [
                evidence(view, DROPS[direction], drops, labels=labels, unit="/s"),
                evidence(view, PACKETS[direction], packets, labels=labels, unit="/s"),
                evidence(view, f"{direction}_drop_ratio", ratio, labels=labels, threshold=warn),
            ]
            text = f"{direction} drops {per_s(drops)} = {pct(ratio)} of packets (threshold {pct(warn)})"
            out.append(_finding(device, severity, text, NIC_DROPS, magnitude(ratio, warn), ev))

    ring_threshold = float(limits["ring_overflow_per_s"])
    overflows = {m: rates[m] for m in RING if rates.get(m, 0.0) > ring_threshold}
    if overflows:
        ev = [
            evidence(view, m, v, labels=labels, unit="/s", threshold=ring_threshold)
            for m, v in overflows.items()
        ]
        worst = max(overflows.values())
        names = ", ".join(
            f"{m.removeprefix(NET).removesuffix('_total')} {per_s(v)}" for m, v in overflows.items()
        )
        finding = _finding(
            device,
            Severity.WARNING,
            f"ring overflow ({names}): the NIC ran out of descriptors",
            RING_OVERFLOW,
            magnitude(worst, ring_threshold),
            ev,
        )
        finding.fixes = _ring_fix(view, device)
        out.append(finding)

    changes = rates.get(CARRIER, 0.0) * window
    if changes > float(limits["flap_changes"]):
        ev = [evidence(view, CARRIER, changes, labels=labels, threshold=float(limits["flap_changes"]))]
        text = f"link flapping: {changes:.0f} carrier changes in {seconds(window)}"
        out.append(_finding(device, Severity.WARNING, text, NIC_FLAPPING, magnitude(changes, 1.0), ev))
    return out


def run(view: View, thresholds: Mapping[str, Any]) -> list[Finding]:
    limits = settings(THRESHOLDS, thresholds)
    why = view.missing(*REQUIRED)
    if why:
        return [Finding.cannot_judge(ID, why)]
    excluded = iface_filter(str(limits["exclude_iface"]))
    rates = {m: by_label(view.rate(m), "device") for m in NEEDS if view.has(m)}
    devices = sorted({d for m in REQUIRED for d in rates.get(m, {}) if not excluded.match(d)})
    if not devices:
        return [Finding.cannot_judge(ID, "no interface had usable packet counters over the window")]

    findings = [f for device in devices for f in _judge(view, device, rates, limits)]
    if findings:
        return findings
    rx_packets = rates[PACKETS["rx"]]
    tx_packets = rates[PACKETS["tx"]]
    unseen = [m.removeprefix(NET) for m in (*CRC_FRAME[:2], RING[0], CARRIER) if m not in rates]
    summary = f"no errors, drops, ring overflows or carrier changes on {len(devices)} interfaces"
    if unseen:
        summary += f" (not exposed here: {', '.join(unseen)})"
    proof = [
        evidence(
            view, PACKETS["rx"], sum(rx_packets.get(d, 0.0) for d in devices), unit="/s", note="rx packets"
        ),
        evidence(
            view, PACKETS["tx"], sum(tx_packets.get(d, 0.0) for d in devices), unit="/s", note="tx packets"
        ),
    ]
    return [Finding.healthy(ID, summary, proof)]
