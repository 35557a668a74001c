"""Forwarding summaries to a real loopback webhook: retries with backoff, no retry on 4xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

from netdoctor.serve.forward import Forwarder, summary_text

RECORD = {
    "id": "0123456789abcdef0123",
    "state": "done",
    "alert": {"name": "NetdoctorConntrackTableNearlyFull", "instance": "incident:9100"},
    "top_finding": {"check": "conntrack", "severity": "critical", "summary": "conntrack table 99% full"},
}


@contextmanager
def receiver(statuses: list[int]) -> Iterator[tuple[str, list[dict]]]:
    """A webhook answering `statuses` in turn (then 200), recording each body."""
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(statuses.pop(0) if statuses else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_retries_with_exponential_backoff_until_delivered() -> None:
    sleeps: list[float] = []
    with receiver([503, 500, 429]) as (url, bodies):
        forwarder = Forwarder(url, retries=5, backoff_s=0.5, sleep=sleeps.append)
        forwarder.submit(RECORD)
        forwarder.close()
    assert len(bodies) == 4 and forwarder.sent == 1
    assert sleeps == [0.5, 1.0, 2.0]
    assert bodies[-1]["text"] == summary_text(RECORD)
    assert "conntrack (critical)" in bodies[-1]["text"] and bodies[-1]["report_id"] == RECORD["id"]


def test_a_client_error_is_not_retried() -> None:
    sleeps: list[float] = []
    with receiver([400]) as (url, bodies):
        forwarder = Forwarder(url, sleep=sleeps.append)
        forwarder.submit(RECORD)
        forwarder.close()
    assert len(bodies) == 1 and sleeps == [] and forwarder.dropped == 1


def test_an_unreachable_receiver_is_retried_then_given_up() -> None:
    with receiver([]) as (url, _):
        pass  # closed: nothing listens on that port any more
    sleeps: list[float] = []
    forwarder = Forwarder(url, retries=3, backoff_s=1, max_backoff_s=3, sleep=sleeps.append, timeout_s=2)
    assert not forwarder.deliver({"text": "x", "report_id": "r"})
    assert sleeps == [1, 2, 3]
    forwarder.close()
