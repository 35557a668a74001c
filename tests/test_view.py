"""View semantics: rates, resets, 32-bit wraps, missing data explained."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from netdoctor.view import WRAP_32, Sample, SampleView, counter_increase
from tests.viewbuilder import make_view


def test_rate_and_gauge_per_label_set() -> None:
    view = make_view(
        {"node_softnet_dropped_total": {"cpu=0": 10, "cpu=1": 0}},
        {"node_softnet_dropped_total": {"cpu=0": 60, "cpu=1": 0}, "node_nf_conntrack_entries": 7},
        interval_s=5,
    )
    rates = {p["cpu"]: p.value for p in view.rate("node_softnet_dropped_total")}
    assert rates == {"0": 10.0, "1": 0.0}
    assert view.rate("node_softnet_dropped_total", cpu="1")[0].value == 0.0
    assert view.gauge_value("node_nf_conntrack_entries") == 7
    assert view.rate_sum("node_softnet_dropped_total") == 10.0
    assert view.rate_sum("absent") is None


def test_reset_counts_from_zero_and_never_goes_negative() -> None:
    view = make_view({"c": {"device=eth0": 1000}}, {"c": {"device=eth0": 30}}, interval_s=10)
    assert view.rate("c")[0].value == 3.0


def test_32bit_wrap_is_a_wrap_not_a_reset() -> None:
    first, second = Sample(), Sample()
    first.add("node_softnet_processed_total", {"cpu": "0"}, WRAP_32 - 100)
    second.add("node_softnet_processed_total", {"cpu": "0"}, 400)
    second.wrap32.add("node_softnet_processed_total")
    view = SampleView(first, second, 10.0, source="t")
    assert view.rate("node_softnet_processed_total")[0].value == 50.0


def test_series_that_appeared_between_samples_has_no_rate() -> None:
    view = make_view({"c": {"device=a": 1}}, {"c": {"device=a": 2, "device=b": 100}})
    assert [p["device"] for p in view.rate("c")] == ["a"]


def test_missing_metric_explains_itself_with_longest_prefix() -> None:
    view = make_view(
        {},
        {"node_netstat_Tcp_OutSegs": 1},
        missing={
            "node_nf_conntrack_": "cannot read /proc/net/stat/nf_conntrack: nf_conntrack is not loaded",
            "node_nf_conntrack_entries": "cannot read /proc/sys/net/netfilter/nf_conntrack_count: no such file",
        },
    )
    assert not view.has("node_nf_conntrack_entries")
    assert "nf_conntrack_count" in view.why_missing("node_nf_conntrack_entries")
    assert "stat/nf_conntrack" in view.why_missing("node_nf_conntrack_stat_drop")
    assert view.missing("node_netstat_Tcp_OutSegs") is None
    assert "not exposed" in view.missing("node_netstat_Tcp_OutSegs", "node_other")


@given(st.integers(0, 2**64), st.integers(0, 2**64), st.booleans())
def test_counter_increase_is_never_negative(before: int, after: int, wraps: bool) -> None:
    increase = counter_increase(float(before), float(after), wraps)
    assert increase >= 0 and not math.isnan(increase)
