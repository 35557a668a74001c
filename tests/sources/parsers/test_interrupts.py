"""/proc/interrupts: header CPU ids, info/devices as node_exporter splits them, summary rows, NICs, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdoctor.errors import ParseError
from netdoctor.sources.parsers.interrupts import (
    InterruptRow,
    interrupts_metrics,
    irq_interface,
    parse_interrupts,
)
from tests.conftest import FIXTURES
from tests.sources.parsers.fuzzing import ANY_TEXT, assert_returns_or_parse_error, mutated

KERNELS = FIXTURES / "kernels"


def read(kernel: str) -> str:
    return (KERNELS / kernel / "proc" / "interrupts").read_text()


def row(kernel: str, irq: str) -> InterruptRow:
    return next(r for r in parse_interrupts(read(kernel)) if r.irq == irq)


def test_4_4_all_queues_on_cpu0() -> None:
    rows = parse_interrupts(read("4.4"))
    queues = [r for r in rows if irq_interface(r.devices, {"eth0", "eth1", "eth2"}) == "eth0"]
    assert [r.irq for r in queues] == ["24", "25", "26", "27", "28"]
    assert row("4.4", "25").counts == {0: 399012021, 1: 0, 2: 0, 3: 0}
    assert (row("4.4", "25").info, row("4.4", "25").devices) == ("IR-PCI-MSI", "1048577-edge eth0-TxRx-0")
    shared = row("4.4", "16")
    assert shared.actions == ["ehci_hcd:usb1", "eth2"]
    assert irq_interface(shared.devices, {"eth0", "eth2"}) == "eth2"


def test_summary_rows_have_no_per_cpu_counts() -> None:
    err = row("4.4", "ERR")
    assert (err.counts, err.summary_total) == ({}, 0)
    nmi = row("4.4", "NMI")
    assert (nmi.info, nmi.devices, nmi.counts[3]) == ("Non-maskable interrupts", "", 1200)
    types = {labels["type"] for _, labels, _ in interrupts_metrics(parse_interrupts(read("4.4")))}
    assert "ERR" not in types and "MIS" not in types and "NMI" in types


def test_4_19_i40e_names() -> None:
    assert irq_interface(row("4.19", "37").devices, {"ens1f0", "lo"}) == "ens1f0"
    assert irq_interface(row("4.19", "35").devices, {"ens1f0"}) is None  # "i40e-0000:3b:00.0:misc"
    assert row("4.19", "37").counts[1] == 949001001


def test_5_10_ena() -> None:
    assert irq_interface(row("5.10", "27").devices, {"ens5"}) == "ens5"
    assert irq_interface(row("5.10", "24").devices, {"ens5"}) is None  # ena-mgmnt@pci:0000:00:05.0
    assert irq_interface(row("5.10", "24").devices, {"ens5"}, {"0000:00:05.0": "ens5"}) == "ens5"


def test_6_1_offline_cpu_column_absent() -> None:
    comp3 = row("6.1", "102")
    assert comp3.counts == {0: 0, 1: 0, 3: 10000000}
    assert (comp3.info, comp3.devices) == ("IR-PCI-MSIX-0000:3b:00.0", "4-edge mlx5_comp3@pci:0000:3b:00.0")
    metrics = interrupts_metrics(parse_interrupts(read("6.1")))
    labels = {"cpu": "3", "type": "102", "info": "IR-PCI-MSIX-0000:3b:00.0", "devices": comp3.devices}
    assert ("node_interrupts_total", labels, 10000000.0) in metrics
    assert not any(labels["cpu"] == "2" for _, labels, _ in metrics)


def test_live_host_virtio() -> None:
    rows = parse_interrupts(read("live-6.18"))
    rx = row("live-6.18", "38")
    assert rx.counts == {0: 0, 1: 999}
    assert rx.devices == "1-edge virtio2-input.0"
    assert irq_interface(rx.devices, {"eth0", "lo"}) is None
    assert irq_interface(rx.devices, {"eth0"}, {"virtio2": "eth0"}) == "eth0"
    metrics = interrupts_metrics(rows)
    per_cpu_rows = [r for r in rows if r.summary_total is None and r.info]
    assert len(metrics) == 2 * len(per_cpu_rows)


@pytest.mark.parametrize(
    ("devices", "interfaces", "expected"),
    [
        ("eth0-TxRx-0", {"eth0"}, "eth0"),
        ("eth0-rx-1", {"eth0"}, "eth0"),
        ("ens5-Tx-Rx-7", {"ens5"}, "ens5"),
        ("mlx5_comp3@pci:0000:3b:00.0", {"eth0", "ens1f0np0"}, None),
        ("virtio0-input.0", {"eth0"}, None),
        ("524288-edge      eth10-TxRx-3", {"eth1", "eth10"}, "eth10"),
        ("eth10-TxRx-3", {"eth1"}, None),
        ("eth1", {"eth1", "eth10"}, "eth1"),
        ("i40e-enp59s0f1-TxRx-2", {"enp59s0f1"}, "enp59s0f1"),
        ("enp59s0f0np0-3", {"enp59s0f0np0"}, "enp59s0f0np0"),
        ("", {"eth0"}, None),
        ("eth0-TxRx-0", set(), None),
    ],
)
def test_irq_interface(devices: str, interfaces: set[str], expected: str | None) -> None:
    assert irq_interface(devices, interfaces) == expected


def test_old_kernel_glued_flow_type() -> None:
    # 3.10-style: chip and flow glued ("IR-PCI-MSI-edge"), devices is the bare action.
    rows = parse_interrupts("  CPU0 CPU1\n 45: 10 20 IR-PCI-MSI-edge eth0-TxRx-0\n")
    assert (rows[0].info, rows[0].devices) == ("IR-PCI-MSI-edge", "eth0-TxRx-0")
    assert irq_interface(rows[0].devices, {"eth0"}) == "eth0"


def test_aarch64_no_space_after_colon() -> None:
    rows = parse_interrupts("           CPU0       CPU1\nIPI0:1234 5678       Rescheduling interrupts\n")
    assert rows[0].counts == {0: 1234, 1: 5678}
    assert rows[0].info == "Rescheduling interrupts"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("CPU0 X\n", "not CPUn"),
        ("CPU0\n 24 1 chip dev\n", "expected 'IRQ: counts'"),
        ("CPU0\n24: chip dev\n", "no count"),
        ("CPU0 CPU1\n24: 1 chip dev\n", "1 counts for 2 CPUs"),
        ("CPU0\n24: 1 chip\n24: 2 chip\n", "twice"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_interrupts(text)


@settings(max_examples=300, deadline=None)
@given(mutated([read("6.1")], alphabet="0123456789 ,:-abCPU"), st.sets(st.text(max_size=8), max_size=3))
def test_fuzz_returns_or_raises_parse_error(text: str, interfaces: set[str]) -> None:
    rows = assert_returns_or_parse_error(parse_interrupts, text)
    if rows is None:
        return
    interrupts_metrics(rows)
    for r in rows:
        found = irq_interface(r.devices, interfaces)
        assert found is None or found in interfaces


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT)
def test_fuzz_any_text(text: str) -> None:
    assert_returns_or_parse_error(lambda t: interrupts_metrics(parse_interrupts(t)), text)
