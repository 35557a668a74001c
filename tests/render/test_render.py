"""Renderers on a real scenario capture: the table fits, JSON follows its schema, Markdown reads."""

from __future__ import annotations

import json

import pytest

from netdoctor.engine import diagnose, load_checks
from netdoctor.render import render
from netdoctor.sources.capture import CaptureSource
from tests.conftest import SCENARIOS


@pytest.fixture(scope="module")
def diagnosis():
    view = CaptureSource(SCENARIOS / "conntrack_full").view()
    return diagnose(view, load_checks(use_entry_points=False))


@pytest.mark.parametrize("width", [100, 120, 160])
def test_table_fits_the_terminal(diagnosis, width: int) -> None:
    text = render(diagnosis, "table", width=width)
    table_lines = [line for line in text.splitlines() if not line.startswith(("note:", "healthy:"))]
    assert max(len(line) for line in table_lines) <= width
    assert "rank" in text and "suggested fix" in text
    assert "status: CRITICAL (exit 2)" in text


def test_json_schema_and_nesting(diagnosis) -> None:
    report = json.loads(render(diagnosis, "json"))
    assert report["schema"] == "netdoctor.diagnosis/v1"
    assert report["exit_code"] == 2 and report["status"] == "CRITICAL"
    top = report["findings"][0]
    assert top["rank"] == "1" and top["check"] == "conntrack"
    assert top["explained_by"], "the conntrack drops / retransmits should nest under the full table"
    child = top["explained_by"][0]
    assert child["rank"] == "1.1"
    for key in ("severity", "status", "summary", "entity", "evidence", "fixes", "score", "tags"):
        assert key in top
    assert top["fixes"][0]["command"].startswith("netdoctor fix --conntrack")


def test_markdown_has_ranked_table_and_evidence(diagnosis) -> None:
    text = render(diagnosis, "markdown")
    assert text.startswith("# netdoctor diagnosis: CRITICAL")
    assert "| 1 | critical |" in text
    assert "## Evidence" in text
