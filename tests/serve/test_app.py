"""`netdoctor serve` over HTTP, diagnosing from a real Prometheus (backfilled incident).

Security (token, content type, size, malformed and hostile payloads), deduplication,
resolution, the index and HTML pages, and a 1,000-alert burst that loses nothing.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netdoctor.errors import SourceError
from netdoctor.serve.app import ServeApp
from netdoctor.serve.payload import Alert
from netdoctor.serve.worker import ServeSettings, make_diagnose_alert
from tests.prom import CountingProxy
from tests.serve.stack import HEALTHY, INCIDENT, am_alert, am_payload, http, wait_for

TOKEN = "s3cret-token-0123456789"
MakeApp = Callable[..., ServeApp]


@pytest.fixture
def make_app(prometheus_url: str, tmp_path: Path) -> Iterator[MakeApp]:
    apps: list[ServeApp] = []

    def make(**overrides: object) -> ServeApp:
        settings = ServeSettings(
            prometheus_url=prometheus_url,
            reports_dir=tmp_path / "reports",
            port=0,
            token=TOKEN,
            **overrides,  # type: ignore[arg-type]
        )
        app = ServeApp(settings).start()
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.stop()


def post(app: ServeApp, payload: object, **kwargs: object) -> tuple[int, dict[str, str], dict]:
    kwargs.setdefault("token", TOKEN)
    status, headers, body = http("POST", f"{app.url}/alert", payload, **kwargs)  # type: ignore[arg-type]
    return status, headers, json.loads(body) if body else {}


def reports(app: ServeApp) -> list[dict]:
    status, _, body = http("GET", f"{app.url}/reports?format=json", token=TOKEN)
    assert status == 200
    return json.loads(body)["reports"]


def settled(app: ServeApp, count: int, timeout_s: float = 60) -> list[dict]:
    """The index once `count` reports are written and no worker is busy."""

    def ready() -> list[dict] | None:
        listed = reports(app)
        return listed if len(listed) >= count and app.queue.busy == 0 and app.queue.depth == 0 else None

    return wait_for(ready, timeout_s)


def files(app: ServeApp) -> list[str]:
    return sorted(p.name for p in app.settings.reports_dir.iterdir())


def test_a_firing_alert_becomes_a_report_whose_top_finding_is_the_cause(make_app: MakeApp) -> None:
    app = make_app()
    status, _, answer = post(app, am_payload([am_alert()]))
    assert status == 200 and len(answer["queued"]) == 1
    [entry] = settled(app, 1)
    assert entry["instance"] == INCIDENT and entry["state"] == "done"
    assert entry["top_finding"]["check"] == "conntrack"
    rid = entry["id"]
    status, headers, page = http("GET", f"{app.url}/reports/{rid}", token=TOKEN)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"conntrack table 99% full" in page and b"netdoctor fix --conntrack" in page
    status, _, raw = http("GET", f"{app.url}/reports/{rid}.json", token=TOKEN)
    record = json.loads(raw)
    assert record["diagnosis"]["findings"][0]["check"] == "conntrack"
    assert [f["check"] for f in record["diagnosis"]["findings"][0]["explained_by"]] == ["conntrack"]
    status, _, markdown = http("GET", f"{app.url}/reports/{rid}.md", token=TOKEN)
    assert b"## Key series (lookback)" in markdown and "▁".encode() in markdown


def test_healthy_instance_report_says_no_problem(make_app: MakeApp) -> None:
    app = make_app()
    post(app, am_payload([am_alert("NetdoctorTcpEstablishedHigh", HEALTHY, fingerprint="aa")]))
    [entry] = settled(app, 1)
    assert entry["top_finding"] is None and entry["state"] == "done"


def test_repeated_notification_reuses_and_resolved_appends_its_end(make_app: MakeApp) -> None:
    app = make_app()
    start = time.time() - 120
    firing = am_alert(starts_at=start)
    post(app, am_payload([firing]))
    [entry] = settled(app, 1)
    status, _, answer = post(app, am_payload([firing]))
    assert status == 200 and answer["reused"] == [entry["id"]] and answer["queued"] == []
    # A new episode of the same alert (new startsAt) is a new report.
    post(app, am_payload([am_alert(starts_at=start - 3600)]))
    assert len(settled(app, 2)) == 2
    end = time.time()
    status, _, answer = post(app, am_payload([am_alert(status="resolved", starts_at=start, ends_at=end)], "resolved"))
    assert answer["resolved"] == ["resolved"]
    record = json.loads(http("GET", f"{app.url}/reports/{entry['id']}.json", token=TOKEN)[2])
    assert record["notifications"] == 2 and record["resolved_at"] == pytest.approx(end, abs=1e-3)
    assert b"## Resolved" in http("GET", f"{app.url}/reports/{entry['id']}.md", token=TOKEN)[2]


def test_index_is_newest_first(make_app: MakeApp) -> None:
    app = make_app()
    for i in range(3):
        post(app, am_payload([am_alert(fingerprint=f"{i + 1:x}", starts_at=time.time() - 300 + i)]))
        settled(app, i + 1)
    listed = reports(app)
    assert [e["created_at"] for e in listed] == sorted((e["created_at"] for e in listed), reverse=True)
    status, headers, page = http("GET", f"{app.url}/reports", token=TOKEN)
    assert headers["Content-Type"].startswith("text/html") and page.count(b'href="/reports/') == 3


def test_healthz_needs_no_token(make_app: MakeApp) -> None:
    app = make_app()
    status, _, body = http("GET", f"{app.url}/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


def raw_request(app: ServeApp, head: str, body: bytes = b"") -> tuple[int, float]:
    """Send bytes as they are; (status, seconds until the answer)."""
    host, port = app.httpd.server_address[:2]
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        answer = sock.recv(4096)
    return int(answer.split(b" ", 2)[1]), time.monotonic() - started


def test_security_refusals_each_get_their_status_and_write_nothing(make_app: MakeApp) -> None:
    app = make_app(max_body_bytes=64 * 1024)
    good = am_payload([am_alert()])
    cases = [
        (post(app, good, token=None)[0], 401),
        (post(app, good, token="wrong-token-0123456789")[0], 401),
        (post(app, good, token=TOKEN[:-1])[0], 401),
        (http("GET", f"{app.url}/reports")[0], 401),
        (post(app, json.dumps(good).encode(), content_type="text/plain")[0], 415),
        (post(app, b"{", content_type="application/json")[0], 400),
        (post(app, {**good, "version": "2"})[0], 422),
        (post(app, am_payload([am_alert(instance='x"} or vector(1) #')]))[0], 422),
        (post(app, am_payload([am_alert(instance="../../../etc/cron.d/x")]))[0], 422),
        (post(app, am_payload([am_alert(extra_labels={"x": "a\x00b"})]))[0], 422),
        (post(app, b"x" * (64 * 1024 + 1))[0], 413),
        (http("GET", f"{app.url}/reports/../../etc/passwd", token=TOKEN)[0], 404),
        (http("GET", f"{app.url}/reports/ABCDEF", token=TOKEN)[0], 404),
        (http("PUT", f"{app.url}/alert", b"{}", token=TOKEN)[0], 405),
    ]
    assert [got for got, _ in cases] == [want for _, want in cases]
    chunked = (
        "POST /alert HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN + "\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    )
    assert raw_request(app, chunked, b"2\r\n{}\r\n0\r\n\r\n")[0] == 411
    # A huge Content-Length is refused from the headers, at once: the body is never awaited.
    huge = (
        "POST /alert HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN + "\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000000000\r\n"
    )
    status, seconds = raw_request(app, huge)
    assert status == 413 and seconds < 2
    time.sleep(0.2)
    assert files(app) == [] and app.queue.depth == 0


def test_hostile_labels_never_become_paths_and_are_escaped_in_html(make_app: MakeApp, tmp_path: Path) -> None:
    app = make_app()
    hostile = am_alert(
        extra_labels={"alertname": "../../../../tmp/pwned", "severity": "<script>alert(1)</script>"},
        fingerprint="beef",
    )
    status, _, answer = post(app, am_payload([hostile]))
    assert status == 200
    [entry] = settled(app, 1)
    names = files(app)
    assert names == sorted([f"{entry['id']}.json", f"{entry['id']}.md"])
    assert not any(p.name == "pwned" for p in tmp_path.rglob("*")) and not Path("/tmp/pwned").exists()
    page = http("GET", f"{app.url}/reports/{entry['id']}", token=TOKEN)[2]
    assert b"<script>alert(1)" not in page and b"&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_label_values_reach_promql_escaped(prometheus_url: str, tmp_path: Path) -> None:
    """Defence in depth: even an instance that skipped validation is a quoted, escaped value."""
    hostile = 'x"}[1h]) or vector(1) or ({instance="y'
    with CountingProxy(prometheus_url) as proxy:
        diagnose_alert = make_diagnose_alert(ServeSettings(prometheus_url=proxy.url, reports_dir=tmp_path))
        alert = Alert("firing", {"instance": hostile}, {}, time.time() - 60, None, "ab")
        with pytest.raises(SourceError, match="unknown instance"):
            diagnose_alert(alert)
    from urllib.parse import unquote_plus

    sent = unquote_plus(proxy.queries("/api/v1/query")[0])
    assert 'instance="x\\"}[1h]) or vector(1) or ({instance=\\"y"' in sent


def test_a_burst_of_1000_alerts_loses_nothing(make_app: MakeApp) -> None:
    app = make_app(queue_size=50, workers=3, lookback_s=900.0)
    alerts = [am_alert(fingerprint=f"{i + 1:04x}", starts_at=time.time() - 600) for i in range(1000)]
    batches = [alerts[i : i + 10] for i in range(0, 1000, 10)]
    refusals: list[str] = []
    lock = threading.Lock()

    def sender(mine: list[list[dict]]) -> None:
        for batch in mine:
            while True:  # what Alertmanager does on a 5xx: send the same notification again
                status, headers, _ = post(app, am_payload(batch))
                if status == 200:
                    break
                assert status == 503 and int(headers["Retry-After"]) >= 1
                with lock:
                    refusals.append(headers["Retry-After"])
                time.sleep(0.05)

    threads = [threading.Thread(target=sender, args=(batches[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    listed = settled(app, 1000, timeout_s=300)
    assert len(listed) == 1000 and {e["state"] for e in listed} == {"done"}
    assert {e["top_finding"]["check"] for e in listed} == {"conntrack"}
    assert refusals, "the queue never filled: the test did not exercise 503 + Retry-After"
    assert len(files(app)) == 2000
