"""Is the conntrack table full, or dropping?

Fill is the observed peak of `node_nf_conntrack_entries` (view.peak: the worst point in
a Prometheus lookback, "now" on a live view) over `node_nf_conntrack_entries_limit`
(else the inventory's net.netfilter.nf_conntrack_max). Drops are the per-CPU
`netdoctor_nf_conntrack_stat_{drop,early_drop,insert_failed}{cpu}` rates when the source
has them, else node_exporter's summed `node_nf_conntrack_stat_*`.

Thresholds (all overridable):
- `warn_fill_ratio` = 0.75 [node-mixin NodeHighNumberConntrackEntriesUsed: > 75%],
  `crit_fill_ratio` = 0.90 [netdata netfilter.conf warns at 90%].
- `drop_per_s` = 0: any rise of drop, early_drop or insert_failed is CRITICAL whatever
  the fill (THRESHOLDS.md): each one is a packet or connection the host refused.
- Sizing of the proposed `nf_conntrack_max`: `headroom` = 2.0 x the peak, rounded up to a
  power of two, never lower than the current limit (kube-proxy also only ever raises).
  When drop/early_drop rose the table was full at some instant the samples missed, so
  the basis is max(peak, current limit). insert_failed alone is a NAT port clash or an
  insert race, not a size problem: no new max is proposed for it.
- `bytes_per_entry` = 320: `struct nf_conn` is a 256-byte slab object on 64-bit (measured:
  /proc/slabinfo "nf_conntrack" objsize 256 on kernel 6.18), plus its extension area
  (nf_ct_ext: acct, timestamp, NAT, labels: kmalloc'd separately, tens of bytes) and its
  share of the hash table (8-byte hlist_nulls_head per bucket). 320 is a conservative sum.
- `max_memory_fraction` = 0.05: the proposed table, full, may take at most 5% of
  `node_memory_MemTotal_bytes`; larger proposals are cut to the largest power of two
  that fits, and refused when even that is not above the current limit.
- `hash_divisor` = 4: hashsize = max / 4, kube-proxy's ratio (average chain of 8 hash
  nodes per bucket when full, since each entry is hashed for both directions). The
  kernel's own default since 5.15 is buckets = max (commit "netfilter: conntrack:
  sanitize table size default settings"; RAM/16384 bytes of buckets, capped at 262144);
  before 5.15 it was max = 4 x buckets. Raising the max without the hash size makes long
  chains, which is the seed's mistake.

When nf_conntrack is not loaded (no entries metric) the check cannot judge and says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netdoctor.checks._common import (
    by_label,
    cpu_order,
    evidence,
    magnitude,
    pct,
    per_s,
    settings,
    severity_for,
    total,
    usable,
)

from netdoctor.causes import CONNTRACK_DROPS, CONNTRACK_FULL
from netdoctor.model import Evidence, Finding, FixSuggestion, Severity
from netdoctor.view import View

ID = "conntrack"
TITLE = "Conntrack table full or dropping"
ENTRIES = "node_nf_conntrack_entries"
LIMIT = "node_nf_conntrack_entries_limit"
MEMTOTAL = "node_memory_MemTotal_bytes"
DROP_FIELDS = ("drop", "early_drop", "insert_failed")
NEEDS = [ENTRIES, LIMIT, MEMTOTAL] + [f"node_nf_conntrack_stat_{f}" for f in DROP_FIELDS]
INVENTORY = ["sysctls"]
THRESHOLDS: dict[str, Any] = {
    "warn_fill_ratio": 0.75,
    "crit_fill_ratio": 0.90,
    "drop_per_s": 0.0,
    "headroom": 2.0,
    "bytes_per_entry": 320,
    "max_memory_fraction": 0.05,
    "hash_divisor": 4,
}


@dataclass
class Proposal:
    """A new nf_conntrack_max and hash size, or why none can be proposed."""

    max_entries: int | None
    hashsize: int | None
    reason: str


def next_power_of_two(value: float) -> int:
    power = 1
    while power < value:
        power *= 2
    return power


def propose(peak: float, limit: int, mem_total: float | None, overflowed: bool, limits: Mapping) -> Proposal:
    """Size the table from the peak with headroom, bounded by memory (see module docstring)."""
    basis = max(peak, limit) if overflowed else peak
    target = max(next_power_of_two(float(limits["headroom"]) * basis), limit)
    per_entry = float(limits["bytes_per_entry"])
    if target <= limit:
        return Proposal(None, None, f"the current limit {limit} already has {limits['headroom']}x headroom")
    if mem_total is not None:
        cap = int(mem_total * float(limits["max_memory_fraction"]) / per_entry)
        if target > cap:
            target = next_power_of_two(cap + 1) // 2 if cap >= 1 else 0
            if target <= limit:
                return Proposal(
                    None,
                    None,
                    f"a larger table would need more than {pct(float(limits['max_memory_fraction']))} "
                    f"of memory ({cap} entries at {per_entry:.0f} B each)",
                )
    return Proposal(target, max(target // int(limits["hash_divisor"]), 1), "")


def _fix(
    proposal: Proposal, limit: int, peak: float, mem_total: float | None, per_entry: float
) -> FixSuggestion:
    assert proposal.max_entries is not None and proposal.hashsize is not None
    memory = proposal.max_entries * per_entry
    return FixSuggestion(
        fix_id="conntrack",
        summary=(
            f"raise nf_conntrack_max {limit} -> {proposal.max_entries} and hashsize -> {proposal.hashsize} "
            f"(~{memory / 2**20:.0f} MiB when full)"
            + ("" if mem_total is not None else "; total memory unknown, not checked")
        ),
        command=f"netdoctor fix --conntrack --max {proposal.max_entries}",
        params={
            "max": proposal.max_entries,
            "hashsize": proposal.hashsize,
            "current_max": limit,
            "peak_entries": int(peak),
            "bytes_per_entry": per_entry,
            "memory_bytes": int(memory),
            "memory_checked": mem_total is not None,
        },
    )


def _drop_rates(view: View) -> tuple[dict[str, dict[str, float]], str | None]:
    """{field: {cpu or "all": rate/s}} and, when no stat counter is readable, why."""
    rates: dict[str, dict[str, float]] = {}
    for field in DROP_FIELDS:
        per_cpu, summed = f"netdoctor_nf_conntrack_stat_{field}", f"node_nf_conntrack_stat_{field}"
        if view.has(per_cpu):
            rates[field] = by_label(view.rate(per_cpu), "cpu")
        elif view.has(summed):
            value = total(view.rate(summed))
            rates[field] = {} if value is None else {"all": value}
    why = None if rates else view.why_missing("node_nf_conntrack_stat_drop")
    return rates, why


def run(view: View, thresholds: Mapping[str, Any]) -> list[Finding]:
    limits = settings(THRESHOLDS, thresholds)
    warn, crit = float(limits["warn_fill_ratio"]), float(limits["crit_fill_ratio"])
    drop_threshold = float(limits["drop_per_s"])
    per_entry = float(limits["bytes_per_entry"])

    if not view.has(ENTRIES):
        return [Finding.cannot_judge(ID, view.why_missing(ENTRIES))]
    observed = [p.value for p in view.gauge(ENTRIES) + view.peak(ENTRIES) if usable(p.value)]
    if not observed:
        return [Finding.cannot_judge(ID, f"{ENTRIES} has no usable value")]
    current = max((p.value for p in view.gauge(ENTRIES) if usable(p.value)), default=0.0)
    peak = max(observed)
    limit_value = view.gauge_value(LIMIT)
    if not usable(limit_value) and view.inventory is not None:
        limit_value = view.inventory.sysctl_int("net.netfilter.nf_conntrack_max")
    limit = int(limit_value) if usable(limit_value) and limit_value else None
    mem_total = view.gauge_value(MEMTOTAL)
    mem_total = mem_total if usable(mem_total) and mem_total else None
    rates, drops_why = _drop_rates(view)

    findings: list[Finding] = []
    rising = {f: r for f, r in rates.items() if any(v > drop_threshold for v in r.values())}
    overflowed = "drop" in rising or "early_drop" in rising
    proposal = propose(peak, limit, mem_total, overflowed, limits) if limit else None
    fixes = [_fix(proposal, limit, peak, mem_total, per_entry)] if proposal and proposal.max_entries else []
    fill_evidence: list[Evidence] = [
        evidence(view, ENTRIES, current, note="entries now"),
        evidence(view, ENTRIES, peak, note="entries at peak"),
    ]
    if limit:
        fill_evidence.append(evidence(view, LIMIT, limit))

    if rising:
        ev = []
        for field, per_cpu in rising.items():
            ev.append(
                evidence(view, f"nf_conntrack_stat_{field}", sum(per_cpu.values()), threshold=0, unit="/s")
            )
            for cpu in sorted((c for c in per_cpu if per_cpu[c] > 0 and c != "all"), key=cpu_order)[:8]:
                ev.append(
                    evidence(
                        view,
                        f"netdoctor_nf_conntrack_stat_{field}",
                        per_cpu[cpu],
                        labels={"cpu": cpu},
                        unit="/s",
                    )
                )
        worst = max(sum(r.values()) for r in rising.values())
        what = ", ".join(f"{f} {per_s(sum(r.values()))}" for f, r in rising.items())
        hint = (
            "" if overflowed else " (insert_failed alone: NAT port clashes or insert races, not table size)"
        )
        findings.append(
            Finding(
                check=ID,
                severity=Severity.CRITICAL,
                summary=f"conntrack refusing packets: {what}{hint}",
                magnitude=magnitude(worst, drop_threshold),
                evidence=ev + fill_evidence,
                tags=[CONNTRACK_DROPS],
                fixes=list(fixes) if overflowed else [],
            )
        )

    if limit is None:
        if findings:
            return findings
        return [Finding.cannot_judge(ID, f"conntrack limit unknown: {view.why_missing(LIMIT)}")]
    fill = peak / limit
    severity = severity_for(fill, warn, crit)
    if severity is not None:
        note = (
            f"; no larger table proposed: {proposal.reason}" if proposal and not proposal.max_entries else ""
        )
        findings.append(
            Finding(
                check=ID,
                severity=severity,
                summary=(
                    f"conntrack table {pct(fill)} full at peak ({int(peak)} of {limit}; "
                    f"threshold {pct(warn)}){note}"
                ),
                magnitude=magnitude(fill, warn),
                evidence=[evidence(view, "conntrack_fill_ratio", fill, threshold=warn), *fill_evidence],
                tags=[CONNTRACK_FULL],
                fixes=fixes,
            )
        )
    if findings:
        return findings

    summary = f"conntrack {pct(fill)} full at peak ({int(peak)} of {limit}), no drops"
    healthy = Finding.healthy(ID, summary, fill_evidence)
    if drops_why:
        healthy.summary = (
            f"conntrack {pct(fill)} full at peak ({int(peak)} of {limit}); drops not visible: {drops_why}"
        )
        healthy.confidence = 0.7
    return [healthy]
