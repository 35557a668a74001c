"""Report files: safe names, atomic writes, deduplication, resolution, restart, HTML escaping."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from netdoctor.engine import diagnose, load_checks
from netdoctor.model import Diagnosis
from netdoctor.serve.payload import Alert, parse_notification
from netdoctor.serve.reports import ReportStore, atomic_write, markdown_to_html, report_id
from tests.serve.stack import am_alert, am_payload
from tests.viewbuilder import make_view


def alert(**kwargs: object) -> Alert:
    return parse_notification(json.dumps(am_payload([am_alert(**kwargs)])).encode()).alerts[0]


def conntrack_full() -> Diagnosis:
    """A real diagnosis (the engine and every check) of a host whose conntrack table is full."""
    before = {
        "node_nf_conntrack_entries": 1000,
        "node_nf_conntrack_entries_limit": 1000,
        "node_nf_conntrack_stat_drop": 0,
        "node_nf_conntrack_stat_insert_failed": 0,
        "node_nf_conntrack_stat_early_drop": 0,
        "node_memory_MemTotal_bytes": 8 * 2**30,
    }
    after = {**before, "node_nf_conntrack_stat_drop": 500}
    return diagnose(make_view(before, after, 10.0), load_checks())


def test_report_id_is_hex_from_fingerprint_and_start(tmp_path: Path) -> None:
    first = alert(starts_at=1_700_000_000, extra_labels={"alertname": "../../../etc/passwd"})
    again = alert(starts_at=1_700_000_000, extra_labels={"alertname": "../../../etc/passwd"})
    later = alert(starts_at=1_700_000_900)
    assert report_id(first) == report_id(again) != report_id(later)
    store = ReportStore(tmp_path)
    store.write(first, conntrack_full())
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{report_id(first)}.json", f"{report_id(first)}.md"]


def test_report_holds_the_alert_the_ranked_diagnosis_and_fix_commands(tmp_path: Path) -> None:
    store = ReportStore(tmp_path)
    record = store.write(alert(), conntrack_full())
    assert record["top_finding"]["check"] == "conntrack"
    assert record["diagnosis"]["schema"] == "netdoctor.diagnosis/v1"
    markdown = store.read_markdown(record["id"])
    assert markdown.startswith("# NetdoctorConntrackTableNearlyFull on incident:9100")
    assert "`netdoctor fix --conntrack" in markdown


def test_claim_deduplicates_and_counts_notifications(tmp_path: Path) -> None:
    store = ReportStore(tmp_path)
    firing = alert(starts_at=1_700_000_000)
    rid, needed = store.claim(firing)
    assert needed
    assert store.claim(firing) == (rid, False)  # queued already: not twice
    store.write(firing, conntrack_full())
    assert store.claim(firing) == (rid, False)  # written: reused
    assert store.read_record(rid)["notifications"] == 2


def test_a_failed_diagnosis_is_retried_on_the_next_notification(tmp_path: Path) -> None:
    store = ReportStore(tmp_path)
    firing = alert()
    rid, _ = store.claim(firing)
    store.write(firing, None, error="cannot reach Prometheus")
    assert "could not diagnose this alert: cannot reach Prometheus" in store.read_markdown(rid)
    assert store.claim(firing) == (rid, True)


def test_resolution_is_appended_once_and_remembered_while_queued(tmp_path: Path) -> None:
    store = ReportStore(tmp_path)
    firing = alert(starts_at=1_700_000_000)
    resolved = alert(status="resolved", starts_at=1_700_000_000, ends_at=1_700_000_600)
    rid, _ = store.claim(firing)
    assert store.resolve(resolved) == "pending"  # diagnosis still running
    store.write(firing, conntrack_full())
    assert store.read_record(rid)["resolved_at"] == 1_700_000_600
    assert store.read_markdown(rid).count("## Resolved") == 1
    assert store.resolve(resolved) == "already"
    assert store.read_markdown(rid).count("## Resolved") == 1
    assert "2023-11-14T22:23:20Z" in store.read_markdown(rid)
    assert store.resolve(alert(status="resolved", starts_at=1)) == "unknown"


def test_a_restart_finds_earlier_reports_newest_first_and_drops_torn_writes(tmp_path: Path) -> None:
    store = ReportStore(tmp_path)
    ids = [store.write(alert(starts_at=1_700_000_000 + i), conntrack_full())["id"] for i in range(3)]
    (tmp_path / ".tmp-crashed-write").write_text('{"half": ')
    reopened = ReportStore(tmp_path)
    assert [e.id for e in reopened.newest_first()] == list(reversed(ids))
    assert not (tmp_path / ".tmp-crashed-write").exists()
    assert reopened.load_errors == []


def test_atomic_write_never_shows_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    versions = ["A" * 300_000, "B" * 300_000]
    atomic_write(target, versions[0])
    seen: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.add(target.read_text())

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(60):
        atomic_write(target, versions[i % 2])
    stop.set()
    thread.join()
    assert seen <= set(versions) and seen
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_html_escapes_every_label(tmp_path: Path) -> None:
    store = ReportStore(tmp_path)
    hostile = alert(extra_labels={"alertname": "<script>alert(1)</script>", "severity": '"><img src=x>'})
    record = store.write(hostile, conntrack_full())
    page = markdown_to_html(store.read_markdown(record["id"]), "t")
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<table>" in page and "<code>netdoctor fix --conntrack" in page
