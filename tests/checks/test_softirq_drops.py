"""softirq_drops: per-CPU symptoms, and the IRQ layout / budget causes with concrete fixes."""

from __future__ import annotations

import math
import time

from netdoctor.checks import softirq_drops
from netdoctor.checks.softirq_drops import cpu_mask

from netdoctor.causes import BUDGET_SHORT, IRQ_PINNED, SOFTIRQ_SATURATED, SOFTNET_DROPS
from netdoctor.model import EntityKind, Severity, Status
from netdoctor.sources.inventory import Inventory, IrqInfo, NicInfo
from netdoctor.view import Sample, SampleView
from tests.node_exporter import node_exporter, scrape
from tests.viewbuilder import make_view

DROPPED = "node_softnet_dropped_total"
SQUEEZED = "node_softnet_times_squeezed_total"
PROCESSED = "node_softnet_processed_total"
CPU_SECONDS = "node_cpu_seconds_total"
SOFTIRQS = "node_softirqs_functions_total"
INTERRUPTS = "node_interrupts_total"
WINDOW = 10.0


def _view(
    drops: dict[int, float] | None = None,
    squeezes: dict[int, float] | None = None,
    shares: dict[int, float] | None = None,
    cpus: int = 4,
    irq_rates: dict[tuple[int, str], dict[int, float]] | None = None,
    **kw,
):
    """Per-second rates per CPU; irq_rates: {(irq, devices): {cpu: interrupts/s}}."""
    before: dict = {DROPPED: {}, SQUEEZED: {}, PROCESSED: {}, SOFTIRQS: {}}
    after: dict = {DROPPED: {}, SQUEEZED: {}, PROCESSED: {}, SOFTIRQS: {}}
    for cpu in range(cpus):
        for name, rates in ((DROPPED, drops), (SQUEEZED, squeezes), (PROCESSED, {cpu: 1000.0})):
            before[name][f"cpu={cpu}"] = 500.0
            after[name][f"cpu={cpu}"] = 500.0 + (rates or {}).get(cpu, 0.0) * WINDOW
        before[SOFTIRQS][f"cpu={cpu},type=NET_RX"] = 0.0
        after[SOFTIRQS][f"cpu={cpu},type=NET_RX"] = 300.0
    if shares is not None:
        before[CPU_SECONDS] = {f"cpu={c},mode=softirq": 100.0 for c in range(cpus)}
        after[CPU_SECONDS] = {
            f"cpu={c},mode=softirq": 100.0 + shares.get(c, 0.0) * WINDOW for c in range(cpus)
        }
    if irq_rates is not None:
        before[INTERRUPTS], after[INTERRUPTS] = {}, {}
        for (irq, devices), per_cpu in irq_rates.items():
            for cpu in range(cpus):
                key = f"cpu={cpu},devices={devices},info=PCI-MSI,type={irq}"
                before[INTERRUPTS][key] = 10.0
                after[INTERRUPTS][key] = 10.0 + per_cpu.get(cpu, 0.0) * WINDOW
    return make_view(before, after, WINDOW, **kw)


def _inventory(affinity=(0,), irqs=4, nic: NicInfo | None = None, sysctls=None) -> Inventory:
    return Inventory(
        irqs=[IrqInfo(30 + q, f"eth0-TxRx-{q}", "eth0", affinity, (100, 0, 0, 0)) for q in range(irqs)],
        nics={"eth0": nic} if nic else {},
        sysctls=sysctls or {},
        cpus=[0, 1, 2, 3],
    )


def run(view, **overrides):
    return softirq_drops.run(view, {**softirq_drops.THRESHOLDS, **overrides})


def tagged(findings, tag):
    return [f for f in findings if tag in f.tags]


def test_drops_warn_per_cpu_and_propose_backlog_from_default():
    findings = run(_view(drops={1: 5.0}, shares={1: 0.3}))
    drops = tagged(findings, SOFTNET_DROPS)
    assert len(drops) == 1 and drops[0].entity.kind is EntityKind.CPU and drops[0].entity.name == "1"
    assert drops[0].severity is Severity.WARNING
    assert "5/s" in drops[0].summary and "IRQ layout could not be seen" in drops[0].summary
    budget = tagged(findings, BUDGET_SHORT)[0]
    assert budget.fixes[0].command == "sysctl -w net.core.netdev_max_backlog=2000"
    assert "kernel default assumed" in budget.summary
    assert tagged(findings, SOFTIRQ_SATURATED) == []


def test_drop_severity_boundary_and_ranking():
    findings = run(_view(drops={0: 10.0, 2: 10.5, 3: 500.0}))
    by_cpu = {f.entity.name: f for f in tagged(findings, SOFTNET_DROPS)}
    assert by_cpu["0"].severity is Severity.WARNING  # 10/s is not "> 10/s"
    assert by_cpu["2"].severity is Severity.CRITICAL
    assert by_cpu["3"].magnitude > by_cpu["2"].magnitude > by_cpu["0"].magnitude >= 1.0
    assert run(_view(drops={0: 0.0}))[0].status is Status.HEALTHY


def test_saturation_needs_share_over_half_and_loss():
    assert tagged(run(_view(squeezes={2: 1.0}, shares={2: 0.5})), SOFTIRQ_SATURATED) == []
    saturated = tagged(run(_view(squeezes={2: 1.0}, shares={2: 0.5001})), SOFTIRQ_SATURATED)
    assert len(saturated) == 1 and saturated[0].entity.name == "2"
    assert math.isclose(saturated[0].magnitude, 0.5001 / 0.5)
    # busy but lossless is not saturated
    assert run(_view(shares={2: 0.95}))[0].status is Status.HEALTHY


def test_squeezes_raise_budget_from_the_current_sysctl():
    sysctls = {"net.core.netdev_budget": "450", "net.core.netdev_budget_usecs": "8000"}
    quiet = run(_view(squeezes={0: 10.0}, inventory=Inventory(sysctls=sysctls, cpus=[0, 1, 2, 3])))
    assert quiet[0].status is Status.HEALTHY
    findings = run(_view(squeezes={0: 10.5}, inventory=Inventory(sysctls=sysctls, cpus=[0, 1, 2, 3])))
    budget = tagged(findings, BUDGET_SHORT)[0]
    fix = budget.fixes[0]
    assert fix.fix_id == "backlog"
    assert fix.command == "sysctl -w net.core.netdev_budget=900 net.core.netdev_budget_usecs=16000"
    assert fix.params["current"] == {"net.core.netdev_budget": 450, "net.core.netdev_budget_usecs": 8000}
    assert "kernel default" not in budget.summary and budget.confidence == 0.9


def test_all_queues_pinned_to_the_dropping_cpu_via_affinity():
    findings = run(_view(drops={0: 50.0}, shares={0: 0.9}, inventory=_inventory(affinity=(0,))))
    pinned = tagged(findings, IRQ_PINNED)
    assert len(pinned) == 1
    cause = pinned[0]
    assert cause.entity.kind is EntityKind.INTERFACE and cause.entity.name == "eth0"
    assert cause.severity is Severity.CRITICAL
    fix = cause.fixes[0]
    assert fix.fix_id == "irq-affinity" and fix.command == "netdoctor fix --irq-affinity eth0"
    assert fix.params["proposed"] == {"30": 0, "31": 1, "32": 2, "33": 3}
    saturated = tagged(findings, SOFTIRQ_SATURATED)[0]
    assert "cause: all 4 queue IRQs of eth0 land on CPU 0" in saturated.summary
    assert tagged(findings, BUDGET_SHORT)[0].confidence == 0.5


def test_measured_interrupt_rates_beat_a_wide_affinity():
    rates = {(30 + q, f"eth0-TxRx-{q}"): {2: 5000.0} for q in range(4)}
    view = _view(drops={2: 3.0}, irq_rates=rates, inventory=_inventory(affinity=(0, 1, 2, 3)))
    pinned = tagged(run(view), IRQ_PINNED)
    assert [p.evidence[0].labels["cpu"] for p in pinned] == ["2"]
    spread = {(30 + q, f"eth0-TxRx-{q}"): {q: 5000.0} for q in range(4)}
    view = _view(drops={2: 3.0}, irq_rates=spread, inventory=_inventory(affinity=(0, 1, 2, 3)))
    assert tagged(run(view), IRQ_PINNED) == []


def test_pinned_queues_on_a_quiet_cpu_are_only_mentioned():
    finding = run(_view(drops={3: 0.0}, inventory=_inventory(affinity=(1,))))[0]
    assert finding.status is Status.HEALTHY
    assert "no symptom yet): eth0 on CPU 1" in finding.summary


def test_single_queue_without_rps_gets_an_rps_mask():
    nic = NicInfo("eth0", rps_cpus={"rx-0": ()}, channels={"combined": 1, "max_combined": 1})
    findings = run(_view(drops={0: 4.0}, inventory=_inventory(irqs=1, nic=nic)))
    fix = tagged(findings, IRQ_PINNED)[0].fixes[0]
    assert fix.fix_id == "rps" and fix.params["rps_cpus"] == "e" and fix.params["cpus"] == [1, 2, 3]
    assert fix.command == "netdoctor fix --rss eth0"


def test_single_queue_with_spare_channels_gets_rss():
    nic = NicInfo("eth0", rps_cpus={"rx-0": ()}, channels={"combined": 1, "max_combined": 8})
    findings = run(_view(drops={0: 4.0}, inventory=_inventory(irqs=1, nic=nic)))
    fix = tagged(findings, IRQ_PINNED)[0].fixes[0]
    assert fix.fix_id == "rss" and fix.params["combined"] == 4
    assert fix.command == "netdoctor fix --rss eth0 --queues 4"


def test_single_queue_with_rps_already_on_is_not_blamed():
    nic = NicInfo("eth0", rps_cpus={"rx-0": (1, 2, 3)}, channels={"combined": 1, "max_combined": 1})
    findings = run(_view(drops={0: 4.0}, inventory=_inventory(irqs=1, nic=nic)))
    assert tagged(findings, IRQ_PINNED) == [] and tagged(findings, SOFTNET_DROPS)


def test_prometheus_without_inventory_guesses_from_interrupt_names():
    rates = {(40, "eth0-TxRx-0"): {1: 900.0}, (41, "eth0-TxRx-1"): {1: 800.0}, (9, "acpi"): {0: 1.0}}
    findings = run(_view(drops={1: 2.0}, irq_rates=rates))
    pinned = tagged(findings, IRQ_PINNED)
    assert [p.entity.name for p in pinned] == ["eth0"]
    assert pinned[0].fixes[0].params["irqs"] == [40, 41]


def test_healthy_names_the_busiest_cpu_and_layout():
    finding = run(_view(shares={0: 0.05, 3: 0.2}, inventory=_inventory(affinity=None)))[0]
    assert finding.status is Status.HEALTHY
    assert "busiest softirq CPU 3 at 20%" in finding.summary and "from the inventory" in finding.summary


def test_missing_inputs():
    missing = make_view({}, {}, missing={"node_softnet_": "cannot read /proc/net/softnet_stat"})
    finding = run(missing)[0]
    assert finding.status is Status.CANNOT_JUDGE and "softnet_stat" in finding.summary
    no_cpu = run(_view(drops={0: 0.0}))[0]  # no node_cpu_seconds_total: drops judged, share unknown
    assert no_cpu.status is Status.HEALTHY and "softirq share unknown" in no_cpu.summary
    assert tagged(run(_view(drops={1: 1.0})), SOFTNET_DROPS)


def test_hostile_values():
    assert run(_view(drops={0: 5.0}), crit_drop_per_s=math.inf)[0].severity is Severity.WARNING
    zero_interval = make_view(
        {DROPPED: {"cpu=0": 1.0}, SQUEEZED: {"cpu=0": 1.0}},
        {DROPPED: {"cpu=0": 9.0}, SQUEEZED: {"cpu=0": 1.0}},
        0.0,
    )
    assert run(zero_interval)[0].status is Status.CANNOT_JUDGE
    huge = tagged(run(_view(drops={0: 1e15})), SOFTNET_DROPS)[0]
    assert huge.severity is Severity.CRITICAL and math.isfinite(huge.magnitude)
    nan = make_view(
        {DROPPED: {"cpu=0": math.nan}, SQUEEZED: {"cpu=0": 0.0}},
        {DROPPED: {"cpu=0": math.nan}, SQUEEZED: {"cpu=0": 0.0}},
    )
    assert run(nan)[0].status is Status.CANNOT_JUDGE


def test_cpu_mask_matches_the_kernel_format():
    assert cpu_mask([0]) == "1"
    assert cpu_mask([1, 2, 3]) == "e"
    assert cpu_mask(list(range(40))) == "ff,ffffffff"
    assert cpu_mask([32]) == "1,00000000"


def test_real_host_counters_from_node_exporter():
    """Real /proc via the real node_exporter (no inventory, as on Prometheus): judged from series alone."""
    with node_exporter(["softnet", "cpu", "interrupts"]) as url:
        first = Sample(taken_at=time.monotonic())
        for (name, labels), value in scrape(url).items():
            first.add(name, labels, value)
        time.sleep(1.0)
        second = Sample(taken_at=time.monotonic())
        for (name, labels), value in scrape(url).items():
            second.add(name, labels, value)
    view = SampleView(first, second, second.taken_at - first.taken_at, source="node_exporter")
    findings = run(view)
    assert findings and all(f.status in (Status.HEALTHY, Status.PROBLEM) for f in findings)
    online = len([line for line in open("/proc/net/softnet_stat") if line.strip()])
    assert len(view.rate(DROPPED)) == online
    if findings[0].status is Status.HEALTHY:
        assert "busiest softirq CPU" in findings[0].summary
        assert "guessed from interrupt names" in findings[0].summary  # interrupts on, inventory off
