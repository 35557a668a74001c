"""Odd or broken kernel files never crash the collector and never read as silent zeros."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdoctor.sources.collect import FAMILIES, build_view
from netdoctor.sources.reader import PROC_FILES, Reader
from tests.conftest import SCENARIOS

HEALTHY = SCENARIOS / "healthy"


@pytest.fixture(scope="module")
def raw_pair():
    first = Reader(str(HEALTHY / "sample1"), live_extras=False).sample(sockets=False)
    second = Reader(str(HEALTHY / "sample2"), live_extras=False).sample(sockets=True)
    return first, second


def _mutations() -> st.SearchStrategy[tuple[str, str]]:
    return st.tuples(
        st.sampled_from(PROC_FILES + ("proc/net/tcp", "proc/net/udp6")),
        st.sampled_from(["empty", "truncate", "garbage", "extra_column", "binaryish"]),
    )


def _mutate(text: str, how: str, seed: int) -> str:
    if how == "empty":
        return ""
    if how == "truncate":
        return text[: max(1, (len(text) * (seed % 97)) // 100)]
    if how == "garbage":
        return "\n".join("".join(chr(33 + (seed * i + j) % 90) for j in range(20)) for i in range(5))
    if how == "extra_column":
        return "\n".join(line + " 12345 zz" for line in text.splitlines())
    return text.replace(" ", "\x00", 3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_mutations(), st.integers(0, 10_000))
def test_a_broken_file_is_reported_not_crashed(raw_pair, mutation: tuple[str, str], seed: int) -> None:
    rel, how = mutation
    first, second = copy.deepcopy(raw_pair)
    if rel not in second.files:
        return
    second.files[rel] = _mutate(second.files[rel], how, seed)
    view = build_view(first, second, 2.0, source="test")
    # Whatever happened, every family the file feeds is either answered or explained.
    for prefix in FAMILIES.get(rel, ()):
        if prefix.endswith("_"):
            continue
        assert view.has(prefix) or view.why_missing(prefix)
    for problem in view.problems:
        assert problem.startswith(("cannot read /", "cannot parse /")), problem


def test_unparseable_conntrack_stat_is_named_in_why_missing(raw_pair) -> None:
    first, second = copy.deepcopy(raw_pair)
    if "proc/net/stat/nf_conntrack" not in second.files:
        pytest.skip("fixture has no conntrack stat file")
    second.files["proc/net/stat/nf_conntrack"] = "entries searched\nnot hex at all\n"
    view = build_view(first, second, 2.0, source="test")
    assert not view.has("node_nf_conntrack_stat_drop")
    assert view.why_missing("node_nf_conntrack_stat_drop").startswith("cannot parse /proc/net/stat/nf_conntrack")
