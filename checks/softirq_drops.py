"""Which CPU is drowning in network softirq work, and why?

Symptoms, per CPU, over the window:
- SOFTNET_DROPS: `node_softnet_dropped_total{cpu}` rising: the CPU's input backlog was
  full (netdev_max_backlog) and the kernel threw the packet away. Any drop above
  `drop_per_s` = 0 is a WARNING [xsos: any; THRESHOLDS.md: "any drop on a CPU"]; above
  `crit_drop_per_s` = 10/s it is CRITICAL (netdata softnet.conf 1min_netdev_backlog_exceeded
  warns at a 1-minute average > 10/s; netdoctor already warns at the first drop, so
  netdata's level becomes the critical one). Findings are ranked by drop rate.
- SOFTIRQ_SATURATED: the CPU spends more than `softirq_share` = 0.5 of its time in softirq
  (`rate(node_cpu_seconds_total{mode="softirq"})`) *and* drops or squeezes there
  (THRESHOLDS.md; no anchor has a softirq-share alert).

Causes, with concrete values:
- IRQ_PINNED "irq-affinity": every queue IRQ of a multi-queue NIC lands on one CPU that
  shows a symptom. Where an IRQ lands is measured from `node_interrupts_total` rates
  when present, else read from the inventory (smp_affinity with one CPU, else the
  per-CPU counts since boot). The fix spreads the queues round-robin over online CPUs.
- IRQ_PINNED "rss"/"rps": a single-queue NIC whose IRQ CPU shows a symptom and whose
  queue has no RPS mask. "rss" when ethtool reports more channels than are in use
  (combined/rx < max: use min(max, online CPUs)); else "rps" with an rps_cpus mask of
  all online CPUs but the interrupting one (kernel Documentation/networking/scaling.rst:
  for a single-queue device spread to the CPUs of the interrupting CPU's memory domain,
  or all CPUs when NUMA locality does not matter).
- BUDGET_SHORT "backlog": squeezes above `squeeze_per_s` = 10/s (netdata
  1min_netdev_budget_ran_outs: 1-minute average > 10/s) -> net.core.netdev_budget and
  netdev_budget_usecs x `budget_factor` = 2 (kernel defaults 300 and 2000 when the
  inventory cannot say: 300 -> 600); drops (the backlog was full, by definition of the
  counter) -> net.core.netdev_max_backlog x 2 (default 1000 -> 2000). Lower confidence
  when an IRQ layout cause was also found: a bigger backlog only buys time there.

On Prometheus (no inventory) the check judges from the series alone and says the IRQ
layout could not be seen unless `node_interrupts_total` (interrupts collector, off by
default) is there; then NIC IRQs are recognised by their queue names (eth0-TxRx-0).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netdoctor.checks._common import by_label, cpu_order, evidence, magnitude, pct, per_s, settings

from netdoctor.causes import BUDGET_SHORT, IRQ_PINNED, SOFTIRQ_SATURATED, SOFTNET_DROPS
from netdoctor.model import Entity, EntityKind, Finding, FixSuggestion, Severity
from netdoctor.sources.inventory import NicInfo
from netdoctor.view import View

ID = "softirq_drops"
TITLE = "Softirq saturation and softnet drops"
CPU_SECONDS = "node_cpu_seconds_total"
DROPPED = "node_softnet_dropped_total"
SQUEEZED = "node_softnet_times_squeezed_total"
PROCESSED = "node_softnet_processed_total"
SOFTIRQS = "node_softirqs_functions_total"
INTERRUPTS = "node_interrupts_total"
NEEDS = [DROPPED, SQUEEZED, PROCESSED, CPU_SECONDS, SOFTIRQS, INTERRUPTS]
INVENTORY = ["irqs", "nics", "sysctls"]
THRESHOLDS: dict[str, Any] = {
    "softirq_share": 0.5,
    "drop_per_s": 0.0,
    "crit_drop_per_s": 10.0,
    "squeeze_per_s": 10.0,
    "budget_factor": 2,
}
KERNEL_DEFAULTS = {
    "net.core.netdev_budget": 300,
    "net.core.netdev_budget_usecs": 2000,
    "net.core.netdev_max_backlog": 1000,
}
QUEUE_IRQ_NAME = re.compile(r"^(?P<iface>[^\s@-]+)-(?:TxRx|txrx|rxtx|rx|tx|Rx|Tx|fp|combined|queue)-?\d+$")


@dataclass
class NicIrqs:
    """One NIC's queue IRQs and the CPUs each one was seen landing on."""

    interface: str
    landing: dict[int, set[str]] = field(default_factory=dict)

    def cpus(self) -> set[str]:
        return set().union(*self.landing.values()) if self.landing else set()


def cpu_mask(cpus: list[int]) -> str:
    """Kernel cpumask text (/sys/.../rps_cpus): hex in 32-bit groups joined by commas."""
    value = sum(1 << cpu for cpu in set(cpus))
    text = f"{value:x}"
    groups = [text[max(i - 8, 0) : i] for i in range(len(text), 0, -8)][::-1]
    return ",".join([groups[0], *(g.zfill(8) for g in groups[1:])])


def _busy_cpus(per_cpu: Mapping[str, float], share: float = 0.1) -> set[str]:
    total = sum(per_cpu.values())
    return {cpu for cpu, value in per_cpu.items() if total > 0 and value >= share * total}


def irq_layout(view: View) -> tuple[dict[str, NicIrqs], str]:
    """NIC -> its IRQs and where they land, and how that was seen (or why it could not be)."""
    rates: dict[str, dict[str, float]] = {}
    for point in view.rate(INTERRUPTS) if view.has(INTERRUPTS) else []:
        irq, cpu = point.labels.get("type", ""), point.labels.get("cpu", "")
        if point.value >= 0 and irq.isdigit():
            rates.setdefault(irq, {})[cpu] = rates.get(irq, {}).get(cpu, 0.0) + point.value
    layout: dict[str, NicIrqs] = {}
    inventory = view.inventory
    if inventory is not None and inventory.irqs:
        online = [str(c) for c in inventory.cpus]
        for info in inventory.irqs:
            if not info.interface:
                continue
            landing = _busy_cpus(rates.get(str(info.irq), {}))
            if not landing and info.affinity and len(info.affinity) == 1:
                landing = {str(info.affinity[0])}
            if not landing:
                counts = {
                    (online[i] if i < len(online) else str(i)): float(n)
                    for i, n in enumerate(info.counts_per_cpu)
                }
                landing = _busy_cpus(counts)
            layout.setdefault(info.interface, NicIrqs(info.interface)).landing[info.irq] = landing
        return layout, "IRQ layout from the inventory" + (" and interrupt rates" if rates else "")
    if rates:
        names = {p.labels.get("type", ""): p.labels.get("devices", "") for p in view.gauge(INTERRUPTS)}
        for irq, per_cpu in rates.items():
            # node_exporter's `devices` label is "<hwirq>-<flow> <action>" ("0-edge eth0-TxRx-0"): the action is last.
            action = (names.get(irq, "").split() or [""])[-1]
            match = QUEUE_IRQ_NAME.match(action)
            if match and _busy_cpus(per_cpu):
                layout.setdefault(match["iface"], NicIrqs(match["iface"])).landing[int(irq)] = _busy_cpus(
                    per_cpu
                )
        return (
            layout,
            "IRQ layout guessed from interrupt names and rates (no inventory: affinity and RPS not seen)",
        )
    why = "no inventory on this source" if inventory is None else "the inventory has no IRQ list"
    return (
        {},
        f"IRQ layout could not be seen ({why}; {INTERRUPTS}: {view.why_missing(INTERRUPTS) or 'no rates'})",
    )


def _spread_fix(
    name: str, cpu: str, nic: NicInfo | None, irqs: list[int], online: list[int]
) -> tuple[str, FixSuggestion] | None:
    """(summary, fix) for a NIC whose receive work all lands on `cpu`, or None if not pinned."""
    queues = len(nic.rps_cpus) if nic and nic.rps_cpus else len(irqs)
    if len(irqs) >= 2 and queues >= 2:
        proposed = {str(irq): online[i % len(online)] for i, irq in enumerate(irqs)} if online else {}
        params = {"interface": name, "irqs": irqs, "current_cpu": cpu, "proposed": proposed}
        return (
            f"all {len(irqs)} queue IRQs of {name} land on CPU {cpu}",
            FixSuggestion(
                "irq-affinity",
                f"spread {name}'s {len(irqs)} queue IRQs over CPUs {online}",
                f"netdoctor fix --irq-affinity {name}",
                params,
            ),
        )
    if nic is None or queues != 1 or not nic.rps_cpus or any(nic.rps_cpus.values()):
        return None  # several queues on one IRQ, or RPS already spreads it, or RPS unknown
    channels = nic.channels or {}
    key = next((k for k in ("combined", "rx") if channels.get(f"max_{k}", 0) > channels.get(k, 0)), None)
    if key:
        target = min(channels[f"max_{key}"], max(len(online), 1))
        return (
            f"{name} uses 1 of {channels[f'max_{key}']} {key} channels, "
            f"so all its receive work is on CPU {cpu}",
            FixSuggestion(
                "rss",
                f"enable {target} {key} channels on {name}",
                f"netdoctor fix --rss {name} --queues {target}",
                {"interface": name, key: target, "current": channels.get(key, 0)},
            ),
        )
    spread = [c for c in online if str(c) != cpu] or online
    mask = cpu_mask(spread)
    return (
        f"{name} has a single queue and no RPS, so all its receive work is on CPU {cpu}",
        FixSuggestion(
            "rps",
            f"steer {name} rx-0 to CPUs {spread} with RPS (rps_cpus={mask})",
            f"netdoctor fix --rss {name}",
            {"interface": name, "queue": "rx-0", "rps_cpus": mask, "cpus": spread},
        ),
    )


def _layout_causes(
    view: View, layout: dict[str, NicIrqs], sick: dict[str, Severity], online: list[int]
) -> dict[str, list[Finding]]:
    """IRQ_PINNED findings, keyed by the overloaded CPU the NIC's receive work lands on."""
    causes: dict[str, list[Finding]] = {}
    nics = view.inventory.nics if view.inventory is not None else {}
    for name, nic_irqs in sorted(layout.items()):
        cpus = nic_irqs.cpus()
        cpu = next(iter(cpus)) if len(cpus) == 1 else None
        irqs = sorted(nic_irqs.landing)
        spread = _spread_fix(name, cpu, nics.get(name), irqs, online) if cpu in sick else None
        if cpu is None or spread is None:
            continue
        note = f"{name} IRQs {','.join(map(str, irqs))} land on CPU {cpu}"
        landing = evidence(view, "irq_landing_cpu", float(cpu) if cpu.isdigit() else -1.0, note=note)
        landing.labels = {"interface": name, "cpu": cpu}
        causes.setdefault(cpu, []).append(
            Finding(
                check=ID,
                severity=sick[cpu],
                summary=f"{spread[0]}, which is overloaded",
                entity=Entity(EntityKind.INTERFACE, name),
                evidence=[landing],
                tags=[IRQ_PINNED],
                fixes=[spread[1]],
            )
        )
    return causes


def _budget_cause(
    view: View, squeezing: list[str], dropping: list[str], factor: int, explained: bool
) -> Finding:
    sysctl = view.inventory.sysctl_int if view.inventory is not None else (lambda name: None)
    fixes, parts = [], []
    for names, cpus, why in (
        (("net.core.netdev_budget", "net.core.netdev_budget_usecs"), squeezing, "squeezes"),
        (("net.core.netdev_max_backlog",), dropping, "drops"),
    ):
        if not cpus:
            continue
        now = {n: sysctl(n) or KERNEL_DEFAULTS[n] for n in names}
        new = {n: v * factor for n, v in now.items()}
        guessed = "" if all(sysctl(n) for n in names) else " (current value unknown: kernel default assumed)"
        parts.append(
            f"{why} on CPU {','.join(cpus)}: "
            + ", ".join(f"{n} {now[n]} -> {new[n]}" for n in names)
            + guessed
        )
        command = "sysctl -w " + " ".join(f"{n}={v}" for n, v in new.items())
        fixes.append(
            FixSuggestion(
                "backlog", f"raise {', '.join(names)} {factor}x", command, {"sysctls": new, "current": now}
            )
        )
    finding = Finding(
        check=ID,
        severity=Severity.WARNING,
        summary="softnet budget/backlog too small: " + "; ".join(parts),
        tags=[BUDGET_SHORT],
        fixes=fixes,
        confidence=0.5 if explained else 0.9,
    )
    return finding


def _symptoms(
    view: View, cpu: str, series: Mapping[str, Mapping[str, float]], limits: Mapping[str, Any], why: str
) -> list[Finding]:
    """SOFTNET_DROPS and SOFTIRQ_SATURATED findings for one CPU."""
    dropped, squeezed = series[DROPPED].get(cpu, 0.0), series[SQUEEZED].get(cpu, 0.0)
    share = series[CPU_SECONDS].get(cpu)
    labels = {"cpu": cpu}
    ev = [
        evidence(view, DROPPED, dropped, labels=labels, threshold=float(limits["drop_per_s"]), unit="/s"),
        evidence(
            view, SQUEEZED, squeezed, labels=labels, threshold=float(limits["squeeze_per_s"]), unit="/s"
        ),
    ]
    ev += [
        evidence(view, m, series[m][cpu], labels=labels, unit="/s")
        for m in (PROCESSED, SOFTIRQS)
        if cpu in series[m]
    ]
    if share is not None:
        share_labels = {"cpu": cpu, "mode": "softirq"}
        ev.append(
            evidence(view, CPU_SECONDS, share, labels=share_labels, threshold=float(limits["softirq_share"]))
        )
    severity = Severity.CRITICAL if dropped > float(limits["crit_drop_per_s"]) else Severity.WARNING
    load = f"softirq {pct(share)}" if share is not None else "softirq share unknown"
    found = []
    if dropped > float(limits["drop_per_s"]):
        summary = (
            f"CPU {cpu} drops {per_s(dropped)} at its softnet backlog "
            f"({load}, {per_s(squeezed)} squeezes); {why}"
        )
        found.append((SOFTNET_DROPS, magnitude(dropped, float(limits["drop_per_s"])), summary))
    if share is not None and share > float(limits["softirq_share"]) and (dropped > 0 or squeezed > 0):
        summary = (
            f"CPU {cpu} saturated: {pct(share)} in softirq, {per_s(dropped)} drops, "
            f"{per_s(squeezed)} squeezes; {why}"
        )
        found.append((SOFTIRQ_SATURATED, magnitude(share, float(limits["softirq_share"])), summary))
    return [
        Finding(
            check=ID,
            severity=severity,
            summary=text,
            entity=Entity(EntityKind.CPU, cpu),
            magnitude=mag,
            evidence=ev,
            tags=[tag],
        )
        for tag, mag, text in found
    ]


def run(view: View, thresholds: Mapping[str, Any]) -> list[Finding]:
    limits = settings(THRESHOLDS, thresholds)
    why = view.missing(DROPPED, SQUEEZED)
    if why:
        return [Finding.cannot_judge(ID, why)]
    series = {
        DROPPED: by_label(view.rate(DROPPED), "cpu"),
        SQUEEZED: by_label(view.rate(SQUEEZED), "cpu"),
        CPU_SECONDS: by_label(view.rate(CPU_SECONDS, mode="softirq"), "cpu"),
        PROCESSED: by_label(view.rate(PROCESSED), "cpu"),
        SOFTIRQS: by_label(view.rate(SOFTIRQS, type="NET_RX"), "cpu"),
    }
    drops, squeezes, shares = series[DROPPED], series[SQUEEZED], series[CPU_SECONDS]
    if not drops:
        return [Finding.cannot_judge(ID, "no usable softnet rate over the window")]
    cpus = sorted(drops, key=cpu_order)
    online = list(view.inventory.cpus) if view.inventory is not None and view.inventory.cpus else []
    online = online or [int(c) for c in cpus if c.isdigit()]
    layout, how = irq_layout(view)

    dropping = [c for c in cpus if drops[c] > float(limits["drop_per_s"])]
    squeezing = [c for c in cpus if squeezes.get(c, 0.0) > float(limits["squeeze_per_s"])]
    saturated = [
        c
        for c in cpus
        if shares.get(c, 0.0) > float(limits["softirq_share"]) and (drops[c] > 0 or squeezes.get(c, 0.0) > 0)
    ]
    sick = {c: Severity.WARNING for c in (*squeezing, *dropping, *saturated)}
    for cpu in dropping:
        if drops[cpu] > float(limits["crit_drop_per_s"]):
            sick[cpu] = Severity.CRITICAL
    causes = _layout_causes(view, layout, sick, online)
    findings = [cause for per_cpu in causes.values() for cause in per_cpu]
    for cpu in cpus:
        reason = "cause: " + "; ".join(c.summary for c in causes[cpu]) if cpu in causes else how
        findings += _symptoms(view, cpu, series, limits, reason)
    if squeezing or dropping:
        factor = int(limits["budget_factor"])
        findings.append(_budget_cause(view, squeezing, dropping, factor, explained=bool(causes)))
    if findings:
        return findings

    busiest = max(shares, key=lambda c: shares[c], default=None)
    summary = f"no softnet drops; squeezes at most {per_s(max(squeezes.values(), default=0.0))}"
    if busiest is not None:
        summary += f"; busiest softirq CPU {busiest} at {pct(shares[busiest])}"
    else:
        summary += f"; softirq share unknown ({view.why_missing(CPU_SECONDS) or 'no rate'})"
    pinned = [
        f"{n} on CPU {min(x.cpus())}"
        for n, x in sorted(layout.items())
        if len(x.landing) > 1 and len(x.cpus()) == 1
    ]
    summary += f"; {how}" + (
        f"; all queue IRQs on one CPU (no symptom yet): {', '.join(pinned)}" if pinned else ""
    )
    total_drops = evidence(view, DROPPED, sum(drops.values()), unit="/s", note="softnet drops, all CPUs")
    return [Finding.healthy(ID, summary, [total_drops])]
