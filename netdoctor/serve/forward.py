"""Forward a report's summary to another webhook (a chat incoming-webhook, say).

Why a thread of its own: a slow or failing chat service must not hold a diagnosis
worker. Summaries go to a bounded queue; one thread posts them with retries and
exponential backoff (a 5xx, 429 or network error is retried; any other 4xx is not —
resending a request the receiver called wrong would only fail again).

The body is `{"text": "..."}` (what Slack, Mattermost and Rocket.Chat incoming webhooks
accept) plus `report_id`, `alert`, `instance` and `top_finding` for other receivers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("netdoctor.serve")


def summary_text(record: dict[str, Any], base_url: str = "") -> str:
    alert = record["alert"]
    top = record.get("top_finding")
    if record.get("state") == "error":
        cause = f"diagnosis failed: {record.get('error')}"
    elif top:
        cause = f"top finding: {top['check']} ({top['severity']}) — {top['summary']}"
    else:
        cause = "no problem found by netdoctor"
    link = f" {base_url.rstrip('/')}/reports/{record['id']}" if base_url else f" report {record['id']}"
    return f"[{alert['name']}] {alert['instance']}: {cause}.{link}"


def forward_body(record: dict[str, Any], base_url: str = "") -> dict[str, Any]:
    return {
        "text": summary_text(record, base_url),
        "report_id": record["id"],
        "alert": record["alert"]["name"],
        "instance": record["alert"]["instance"],
        "top_finding": record.get("top_finding"),
    }


@dataclass
class Forwarder:
    """Posts summaries to `url` from one background thread, with retries and backoff."""

    url: str
    retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    timeout_s: float = 10.0
    capacity: int = 1000
    base_url: str = ""
    sleep: Callable[[float], None] = time.sleep
    sent: int = 0
    dropped: int = 0
    _items: deque[dict[str, Any]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"--forward-url {self.url!r}: expected http:// or https://")
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="netdoctor-forward", daemon=True)
        self._thread.start()

    def submit(self, record: dict[str, Any]) -> None:
        with self._cond:
            if len(self._items) >= self.capacity:
                self.dropped += 1
                log.warning("forward queue full: summary of report %s not forwarded", record.get("id"))
                return
            self._items.append(forward_body(record, self.base_url))
            self._cond.notify()

    def post_once(self, body: dict[str, Any]) -> int:
        """One POST; returns the HTTP status (0 for a network error)."""
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "netdoctor-serve"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, OSError):
            return 0

    def deliver(self, body: dict[str, Any]) -> bool:
        """Post with retries; True once the receiver answered 2xx."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            status = self.post_once(body)
            if 200 <= status < 300:
                self.sent += 1
                return True
            retryable = status == 0 or status == 429 or status >= 500
            if not retryable or attempt == self.retries:
                log.warning("forward of report %s failed (HTTP %s)", body.get("report_id"), status or "error")
                self.dropped += 1
                return False
            self.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)
        return False

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._stopping:
                    self._cond.wait()
                if not self._items:
                    return
                body = self._items.popleft()
            self.deliver(body)

    def close(self, timeout_s: float = 30.0) -> None:
        """Send what is queued (within `timeout_s`), then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=timeout_s)
