"""The HTTP side of `netdoctor serve`: Alertmanager's webhook in, reports out.

    POST /alert          Alertmanager webhook (payload version 4); answers at once
    GET  /healthz        liveness + queue depth (never needs the token)
    GET  /reports        index, newest first (HTML; JSON with ?format=json or Accept: application/json)
    GET  /reports/ID     one report as HTML (ID.md: Markdown, ID.json: JSON)

Request checks, in this order, each with its own status so a sender can tell what it
did wrong: 401 (bearer token, compared in constant time; every endpoint but /healthz
when a token is set), 415 (only application/json), 411 (a Content-Length is
required: no chunked bodies), 413 (over the size limit — refused before reading),
400 (not JSON), 422 (not an Alertmanager v4 payload, or a label that cannot be used),
503 + Retry-After (queue full: Alertmanager retries), 200 (queued, or deduplicated).

stdlib only (ThreadingHTTPServer): no new dependency for a small, internal endpoint.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import signal
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from netdoctor.serve.forward import Forwarder
from netdoctor.serve.payload import PayloadError, parse_notification
from netdoctor.serve.queue import Job, WorkQueue
from netdoctor.serve.reports import REPORT_ID, ReportStore, index_html, markdown_to_html
from netdoctor.serve.worker import AlertWorker, DiagnoseAlert, ServeSettings

log = logging.getLogger("netdoctor.serve")
READ_TIMEOUT_S = 15.0
_REPORT_PATH = re.compile(r"^/reports/([0-9a-f]{20})(\.json|\.md)?$")


class ServeApp:
    """The store, the queue, the forwarder and the HTTP server, started and stopped together."""

    def __init__(self, settings: ServeSettings, diagnose_alert: DiagnoseAlert | None = None) -> None:
        from netdoctor.serve.worker import make_diagnose_alert

        self.settings = settings
        self.store = ReportStore(settings.reports_dir)
        for problem in self.store.load_errors:
            log.warning("unreadable report: %s", problem)
        self.forwarder = Forwarder(settings.forward_url, base_url=settings.public_url) if settings.forward_url else None
        self.worker = AlertWorker(
            self.store,
            diagnose_alert or make_diagnose_alert(settings),
            self.forwarder,
            dict(settings.autofix),
        )
        self.queue = WorkQueue(self.worker, capacity=settings.queue_size, workers=settings.workers)
        self.httpd = _Server((settings.host, settings.port), _Handler, self)
        self._serving: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ServeApp:
        """Start the workers and the HTTP server in background threads."""
        self.queue.start()
        self._serving = threading.Thread(target=self.httpd.serve_forever, name="netdoctor-http", daemon=True)
        self._serving.start()
        return self

    def stop(self) -> bool:
        """Stop taking requests, finish every queued alert, flush forwards; True if all finished."""
        if self._stopped.is_set():
            return True
        self.httpd.shutdown()
        self.httpd.server_close()
        finished = self.queue.drain(self.settings.drain_timeout_s)
        if self.forwarder is not None:
            self.forwarder.close()
        self._stopped.set()
        return finished

    def run_until_signalled(self) -> bool:
        """Serve until SIGTERM or SIGINT, then drain (the systemd unit's stop)."""
        stop = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("signal %d: draining %d queued alert(s)", signum, self.queue.depth)
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            log.info("netdoctor serve listening on %s, reports in %s", self.url, self.settings.reports_dir)
            while not stop.wait(1.0):
                pass
            return self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # -- request handling (called from _Handler) --------------------------------------------
    def authorised(self, header: str | None) -> bool:
        token = self.settings.token
        if not token:
            return True
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), token.encode())

    def accept(self, body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        """A webhook body -> (status, JSON answer, extra headers)."""
        try:
            notification = parse_notification(body)
        except PayloadError as exc:
            return exc.status, {"error": exc.message}, {}
        jobs: list[Job] = []
        answer: dict[str, Any] = {"queued": [], "reused": [], "resolved": []}
        for alert in notification.alerts:
            if not alert.firing:
                continue
            rid, needed = self.store.claim(alert)
            if needed:
                jobs.append(Job(rid, alert))
                answer["queued"].append(rid)
            else:
                answer["reused"].append(rid)
        if jobs and not self.queue.offer(jobs):
            self.store.release([job.report_id for job in jobs])
            retry = self.queue.retry_after_s()
            return (
                503,
                {"error": f"queue full ({self.queue.capacity}); retry in {retry} s"},
                {"Retry-After": str(retry)},
            )
        for alert in notification.alerts:
            if not alert.firing:
                answer["resolved"].append(self.store.resolve(alert))
        return 200, answer, {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type, app: ServeApp) -> None:
        self.app = app
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT_S  # a client that stops sending cannot hold a thread for long
    server_version = "netdoctor-serve"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug("%s " + format, self.address_string(), *args)

    @property
    def app(self) -> ServeApp:
        return self.server.app

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, (json.dumps(data, indent=2) + "\n").encode(), "application/json", headers)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": message}, headers)

    def _check_token(self) -> bool:
        if self.app.authorised(self.headers.get("Authorization")):
            return True
        self.close_connection = True
        self._error(401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="netdoctor"'})
        return False

    # -- POST ------------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        path = urlsplit(self.path).path
        if path != "/alert":
            self.close_connection = True
            self._error(404 if path not in ("/healthz", "/reports") else 405, f"no POST {path[:80]}")
            return
        if not self._check_token():
            return
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            self.close_connection = True
            self._error(415, "Content-Type must be application/json")
            return
        if self.headers.get("Transfer-Encoding") or self.headers.get("Content-Length") is None:
            self.close_connection = True
            self._error(411, "a Content-Length is required (no chunked bodies)")
            return
        try:
            length = int(self.headers["Content-Length"])
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._error(400, "Content-Length is not a number")
            return
        if length > self.app.settings.max_body_bytes:
            self.close_connection = True  # the body is never read
            self._error(413, f"body of {length} bytes is over the {self.app.settings.max_body_bytes}-byte limit")
            return
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            return
        if len(body) != length:
            self.close_connection = True
            self._error(400, "body shorter than its Content-Length")
            return
        status, answer, headers = self.app.accept(body)
        if status >= 400:
            log.info("POST /alert refused (%d): %s", status, answer.get("error"))
        self._json(status, answer, headers)

    # -- GET -------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        parts = urlsplit(self.path)
        path = parts.path
        if path == "/healthz":
            self._json(
                200,
                {
                    "status": "ok",
                    "queue_depth": self.app.queue.depth,
                    "queue_capacity": self.app.queue.capacity,
                    "busy_workers": self.app.queue.busy,
                    "reports": len(self.app.store),
                },
            )
            return
        if not self._check_token():
            return
        if path in ("/reports", "/reports/"):
            entries = self.app.store.newest_first()
            wants_json = "json" in parse_qs(parts.query).get("format", []) or "application/json" in (
                self.headers.get("Accept") or ""
            )
            if wants_json:
                self._json(200, {"reports": [e.as_dict() for e in entries]})
            else:
                self._send(200, index_html(entries).encode(), "text/html; charset=utf-8")
            return
        found = _REPORT_PATH.match(path)
        if not found or not REPORT_ID.match(found.group(1)):
            self._error(404, "no such page")
            return
        rid, ext = found.group(1), found.group(2)
        if ext == ".json":
            record = self.app.store.read_record(rid)
            if record is None:
                self._error(404, f"no report {rid}")
            else:
                self._json(200, record)
            return
        markdown = self.app.store.read_markdown(rid)
        if markdown is None:
            self._error(404, f"no report {rid}")
        elif ext == ".md":
            self._send(200, markdown.encode(), "text/markdown; charset=utf-8")
        else:
            self._send(200, markdown_to_html(markdown, f"netdoctor report {rid}").encode(), "text/html; charset=utf-8")

    do_HEAD = do_GET

    def _not_allowed(self) -> None:
        self.close_connection = True
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} not allowed")

    do_PUT = do_DELETE = do_PATCH = _not_allowed
