"""conntrack: fill against the limit, drops at any fill, and a memory-bounded new size."""

from __future__ import annotations

import math
import sys

from netdoctor.checks import conntrack

from netdoctor.causes import CONNTRACK_DROPS, CONNTRACK_FULL
from netdoctor.model import Severity, Status
from netdoctor.sources.inventory import Inventory
from tests.checks.test_nic_errors import exporter_in, in_netns, real_netns, view_between
from tests.conftest import require_binary
from tests.viewbuilder import make_view

ENTRIES = "node_nf_conntrack_entries"
LIMIT = "node_nf_conntrack_entries_limit"
MEM = "node_memory_MemTotal_bytes"
GIB = 2.0**30


def _view(
    entries: float,
    limit: float | None = 262144,
    drops: dict | None = None,
    mem: float | None = 16 * GIB,
    per_cpu: dict | None = None,
    **kw,
):
    """drops: {"drop": increase over 10 s} summed; per_cpu: {"early_drop": {"0": inc, "1": inc}}."""
    before: dict = {ENTRIES: entries}
    after: dict = {ENTRIES: entries}
    for metric, value in ((LIMIT, limit), (MEM, mem)):
        if value is not None:
            before[metric] = after[metric] = value
    for field in conntrack.DROP_FIELDS:
        before[f"node_nf_conntrack_stat_{field}"] = 100.0
        after[f"node_nf_conntrack_stat_{field}"] = 100.0 + (drops or {}).get(field, 0.0)
    for field, cpus in (per_cpu or {}).items():
        name = f"netdoctor_nf_conntrack_stat_{field}"
        before[name] = {f"cpu={c}": 7.0 for c in cpus}
        after[name] = {f"cpu={c}": 7.0 + inc for c, inc in cpus.items()}
    return make_view(before, after, 10.0, **kw)


def run(view, **overrides):
    return conntrack.run(view, {**conntrack.THRESHOLDS, **overrides})


def test_fill_boundaries():
    limit = 100_000
    assert run(_view(75_000, limit))[0].status is Status.HEALTHY  # "> 75%"
    warn = run(_view(75_001, limit))[0]
    assert warn.severity is Severity.WARNING and CONNTRACK_FULL in warn.tags
    assert run(_view(90_000, limit))[0].severity is Severity.WARNING
    assert run(_view(90_001, limit))[0].severity is Severity.CRITICAL


def test_full_table_proposes_power_of_two_with_hash_quarter():
    finding = run(_view(250_000, 262_144))[0]
    assert finding.severity is Severity.CRITICAL
    assert math.isclose(finding.magnitude, (250_000 / 262_144) / 0.75)
    fix = finding.fixes[0]
    assert fix.fix_id == "conntrack"
    # 2 x 250,000 = 500,000 -> 524,288; hash = max/4
    assert fix.params["max"] == 524_288 and fix.params["hashsize"] == 131_072
    assert fix.command == "netdoctor fix --conntrack --max 524288"
    assert fix.params["memory_bytes"] == 524_288 * 320 and fix.params["memory_checked"] is True


def test_proposal_is_capped_by_memory_and_refused_when_no_room():
    # 1 GiB RAM: 5% / 320 B = 167,772 entries -> largest power of two 131,072
    finding = run(_view(90_000, 100_000, mem=GIB))[0]
    assert finding.fixes[0].params["max"] == 131_072
    # 256 MiB RAM: cap 41,943 -> 32,768 < current limit 40,000: no fix, said why
    refused = run(_view(39_000, 40_000, mem=256 * 2.0**20))[0]
    assert refused.severity is Severity.CRITICAL and refused.fixes == []
    assert "of memory" in refused.summary


def test_proposal_never_lowers_the_limit():
    assert conntrack.propose(10, 262_144, 16 * GIB, False, conntrack.THRESHOLDS).max_entries is None
    bigger = conntrack.propose(10, 262_144, 16 * GIB, True, conntrack.THRESHOLDS)
    assert bigger.max_entries == 524_288 and bigger.hashsize == 131_072


def test_drops_are_critical_at_low_fill_and_size_from_the_limit():
    findings = run(_view(1_000, 65_536, drops={"early_drop": 30, "drop": 5}))
    assert len(findings) == 1
    finding = findings[0]
    assert finding.severity is Severity.CRITICAL and CONNTRACK_DROPS in finding.tags
    assert "early_drop 3/s" in finding.summary
    # drops mean the table overflowed between samples: basis is the limit, 2 x 65,536
    assert finding.fixes[0].params["max"] == 131_072


def test_insert_failed_alone_proposes_no_resize():
    finding = run(_view(1_000, 65_536, drops={"insert_failed": 1}))[0]
    assert finding.severity is Severity.CRITICAL and finding.fixes == []
    assert "NAT port clashes" in finding.summary


def test_per_cpu_counters_are_preferred_and_named():
    view = _view(1_000, 65_536, per_cpu={"drop": {"0": 0.0, "3": 20.0}}, drops={"drop": 999})
    finding = run(view)[0]
    per_cpu = [e for e in finding.evidence if e.labels.get("cpu")]
    assert [(e.labels["cpu"], e.value) for e in per_cpu] == [("3", 2.0)]
    assert "drop 2/s" in finding.summary


def test_drops_and_full_give_two_findings():
    findings = run(_view(250_000, 262_144, drops={"drop": 10}))
    assert {t for f in findings for t in f.tags} == {CONNTRACK_DROPS, CONNTRACK_FULL}


def test_healthy_carries_fill_and_is_less_sure_without_drop_counters():
    finding = run(_view(1_000, 65_536))[0]
    assert finding.status is Status.HEALTHY and "1.53%" in finding.summary and finding.confidence == 1.0
    view = make_view(
        {ENTRIES: 10.0, LIMIT: 100.0},
        {ENTRIES: 10.0, LIMIT: 100.0},
        missing={"node_nf_conntrack_stat": "cannot read /proc/net/stat/nf_conntrack"},
    )
    partial = run(view)[0]
    assert partial.status is Status.HEALTHY and partial.confidence == 0.7
    assert "/proc/net/stat/nf_conntrack" in partial.summary


def test_not_loaded_cannot_judge():
    view = make_view({}, {MEM: GIB}, missing={"node_nf_conntrack_": "nf_conntrack module not loaded"})
    finding = run(view)[0]
    assert finding.status is Status.CANNOT_JUDGE and "not loaded" in finding.summary


def test_limit_from_inventory_and_unknown_limit():
    inventory = Inventory(sysctls={"net.netfilter.nf_conntrack_max": "1000"})
    view = make_view({ENTRIES: 950.0}, {ENTRIES: 950.0}, inventory=inventory)
    assert run(view)[0].severity is Severity.CRITICAL
    unknown = make_view({ENTRIES: 950.0}, {ENTRIES: 950.0})
    assert run(unknown)[0].status is Status.CANNOT_JUDGE


def test_memory_unknown_still_proposes_but_says_so():
    fix = run(_view(250_000, 262_144, mem=None))[0].fixes[0]
    assert fix.params["memory_checked"] is False and "not checked" in fix.summary


def test_hostile_values():
    assert run(_view(math.nan, 65_536))[0].status is Status.CANNOT_JUDGE
    assert run(_view(10, 0))[0].status is Status.CANNOT_JUDGE  # limit 0: no division
    assert run(_view(0, 65_536))[0].status is Status.HEALTHY
    huge = run(_view(1e12, 65_536))[0]
    assert huge.severity is Severity.CRITICAL and math.isfinite(huge.magnitude)
    assert run(_view(-5, 65_536))[0].status is Status.CANNOT_JUDGE


def test_real_conntrack_counts_flows_in_a_namespace():
    """Real kernel + real node_exporter: 50 tracked UDP flows show up as entries, table healthy."""
    require_binary("nft")
    with real_netns("ct") as ns:
        rules = (
            "table inet ndchk {\n chain output {\n type filter hook output priority 0;\n"
            " ct state new accept\n }\n}\n"
        )
        in_netns(ns, "nft", "-f", "-", stdin=rules)
        send = (
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "for port in range(20000, 20050):\n    s.sendto(b'x', ('127.0.0.1', port))\n"
        )
        with exporter_in(ns, ["conntrack", "meminfo"]) as scrape:
            first = scrape()
            in_netns(ns, sys.executable, "-c", send)
            second = scrape()
    view = view_between(first, second)
    finding = run(view)[0]
    assert finding.status is Status.HEALTHY and finding.confidence == 1.0
    entries = next(e for e in finding.evidence if e.note == "entries now")
    assert entries.value >= 50
    limit = next(e for e in finding.evidence if e.metric == LIMIT)
    assert limit.value == float(open("/proc/sys/net/netfilter/nf_conntrack_max").read())
