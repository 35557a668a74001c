"""Pure PromQL helpers: escaping, selectors, batching, durations, times, client-side rates."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netdoctor.sources import promql
from netdoctor.sources.promql import Matcher, PromQLInputError


def _unquote_promql(body: str) -> str:
    """Decode a PromQL double-quoted string body the way Go's strconv does (subset we emit)."""
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\":
            nxt = body[i + 1]
            if nxt == "x":
                out.append(chr(int(body[i + 2 : i + 4], 16)))
                i += 4
                continue
            out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
            i += 2
        else:
            assert body[i] != '"', "an unescaped quote would end the string"
            assert body[i] != "\n"
            out.append(body[i])
            i += 1
    return "".join(out)


@given(st.text())
def test_escaped_label_value_round_trips_and_never_closes_the_string(value: str) -> None:
    escaped = promql.escape_label_value(value)
    assert _unquote_promql(escaped) == value


def test_hostile_instance_stays_inside_its_string() -> None:
    hostile = 'x"}or vector(1)#'
    rendered = promql.selector([Matcher("instance", "=", hostile)], ["up"])
    assert rendered == '{__name__=~"up",instance="x\\"}or vector(1)#"}'


def test_selector_validates_metric_names() -> None:
    with pytest.raises(PromQLInputError):
        promql.selector([], ['up"}or vector(1)'])
    assert promql.selector([], ["b", "a", "a"]) == '{__name__=~"a|b"}'


def test_parse_selector_reescapes_and_refuses_injection() -> None:
    matchers = promql.parse_selector('{job="node", env=~"prod.*",dc!="a\\"b"}')
    assert matchers == [Matcher("job", "=", "node"), Matcher("env", "=~", "prod.*"), Matcher("dc", "!=", 'a"b')]
    assert promql.selector(matchers) == '{job="node",env=~"prod.*",dc!="a\\"b"}'
    for bad in ('{job="node"} or vector(1)', 'job="node"', '{job="a"} or {x="1"}', "{job=node}", '{__name__="up"}'):
        with pytest.raises(PromQLInputError):
            promql.parse_selector(bad)
    assert promql.parse_selector(None) == [] and promql.parse_selector("{}") == []


def test_batches_keep_each_selector_short_and_cover_every_name() -> None:
    names = [f"node_metric_number_{i}" for i in range(300)]
    matchers = [Matcher("instance", "=", "h:9100")]
    batches = promql.batch_names(names, matchers, max_chars=1000)
    assert sorted(n for b in batches for n in b) == sorted(names)
    assert all(len(promql.selector(matchers, b)) <= 1000 for b in batches)
    assert 1 < len(batches) <= math.ceil(len(promql.selector(matchers, names)) / 900)
    assert promql.batch_names(names[:5], matchers) == [sorted(names[:5])]


@pytest.mark.parametrize(
    ("text", "seconds"), [("5m", 300), ("1h30m", 5400), ("90s", 90), ("300", 300), ("2d", 172800), ("500ms", 0.5)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert promql.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-5m", "5x", "m5", "0s", "1h 5m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(PromQLInputError):
        promql.parse_duration(text)


def test_format_duration() -> None:
    assert [promql.format_duration(s) for s in (300, 3600, 86400, 90, 0.5)] == ["5m", "1h", "1d", "90s", "500ms"]


def test_parse_time_forms() -> None:
    now = 1_700_000_000.0
    assert promql.parse_time("-30m", now) == now - 1800
    assert promql.parse_time("now", now) == now and promql.parse_time(None, now) == now
    assert promql.parse_time("1699990000", now) == 1699990000
    assert promql.parse_time("2023-11-14T22:13:20Z", now) == 1_700_000_000
    assert promql.parse_time("2023-11-15T00:13:20+02:00", now) == 1_700_000_000
    for bad in ("yesterday", "2023-11-14T22:13:20", "-x"):
        with pytest.raises(PromQLInputError):
            promql.parse_time(bad, now)


def test_window_rate_counts_a_decrease_as_a_reset() -> None:
    samples = [(0.0, 100.0), (15.0, 250.0), (30.0, 40.0), (45.0, 190.0)]
    # increases: 150, then reset (counted from 0 -> 40), then 150: 340 over 45 s.
    assert promql.window_rate(samples, -1, 45) == pytest.approx(340 / 45)
    assert promql.window_rate(samples, 20, 45) == pytest.approx(150 / 15)
    assert promql.window_rate(samples, 40, 45) is None  # one sample: no rate
    assert promql.window_rate([], 0, 10) is None


def test_rolling_rates_equal_window_rate_at_each_sample() -> None:
    samples = [
        (float(t), float(v)) for t, v in zip(range(0, 300, 15), [0, 10, 30, 5, 20, 80, 80, 95] * 3, strict=False)
    ]
    rolling = dict(promql.rolling_rates(samples, 60))
    for t, rate in rolling.items():
        assert rate == pytest.approx(promql.window_rate(samples, t - 60, t))
    assert min(rolling) == 15.0


def test_last_in_and_max_point() -> None:
    samples = [(0.0, 1.0), (15.0, 5.0), (30.0, 2.0)]
    assert promql.last_in(samples, 0, 20) == (15.0, 5.0)
    assert promql.last_in(samples, 30, 60) is None
    assert promql.max_point([(0, 1.0), (1, 5.0), (2, 5.0), (3, math.nan)]) == (1, 5.0)
    assert promql.max_point([]) is None
