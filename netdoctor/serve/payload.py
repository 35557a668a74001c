"""Alertmanager webhook payloads (version 4), validated before anything is queued.

Why strict: the payload comes from the network. Every field serve uses is checked for
type and shape here, once, so that the rest of serve handles typed `Alert`s only, and a
malformed payload gets one clear 4xx message instead of a half-processed batch. A
payload is accepted or refused as a whole.

Label values are untrusted text. They never become file names (reports are named by a
hash, see `reports.report_id`) and the `instance` label — the only one that reaches
PromQL, escaped by `netdoctor.sources.promql` — must look like a scrape target
(`host`, `host:port`, `[v6]:port`): a value with quotes, braces, slashes, spaces or
control characters cannot be a node_exporter target, so it is refused with 422 rather
than queried.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SUPPORTED_VERSION = "4"
MAX_ALERTS_PER_PAYLOAD = 1000
MAX_LABELS = 64
MAX_VALUE_CHARS = 4096
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# host, host:port, [ipv6]:port, ipv6 — what a node_exporter scrape target's instance looks like.
INSTANCE = re.compile(r"^(\[[0-9A-Fa-f:.%a-zA-Z]+\]|[A-Za-z0-9_.:%-]+)(:[0-9]{1,5})?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
# Alertmanager writes Go's zero time for "no end yet".
_GO_ZERO_YEAR = 1


class PayloadError(Exception):
    """A payload serve refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Alert:
    """One alert of a webhook notification, typed."""

    status: str  # "firing" or "resolved"
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None
    fingerprint: str
    generator_url: str = ""
    starts_at_text: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def instance(self) -> str:
        return self.labels.get("instance", "")

    @property
    def firing(self) -> bool:
        return self.status == "firing"


@dataclass
class Notification:
    """The whole webhook body: its alerts plus the fields reports show."""

    alerts: list[Alert]
    receiver: str = ""
    status: str = ""
    group_key: str = ""
    external_url: str = ""
    common_labels: dict[str, str] = field(default_factory=dict)


def parse_time(text: Any, where: str) -> float | None:
    """RFC 3339 (Go's format, up to nanoseconds) -> Unix seconds; Go's zero time -> None."""
    if not isinstance(text, str):
        raise PayloadError(422, f"{where}: expected an RFC 3339 time string")
    found = _RFC3339.match(text)
    if not found:
        raise PayloadError(422, f"{where}: {text[:40]!r} is not an RFC 3339 time")
    year, month, day, hour, minute, second = (int(found.group(i)) for i in range(1, 7))
    if year == _GO_ZERO_YEAR:
        return None
    fraction = float(found.group(7) or 0.0)
    zone = found.group(8)
    try:
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    except ValueError as exc:
        raise PayloadError(422, f"{where}: {text[:40]!r}: {exc}") from None
    offset = 0
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return moment.timestamp() + fraction - offset


def _string_map(value: Any, where: str, *, label_names: bool) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(422, f"{where}: expected an object of strings")
    if len(value) > MAX_LABELS:
        raise PayloadError(422, f"{where}: {len(value)} entries (at most {MAX_LABELS})")
    out: dict[str, str] = {}
    for key, item in value.items():
        if label_names and not LABEL_NAME.match(key):
            raise PayloadError(422, f"{where}: {key[:40]!r} is not a label name")
        if not isinstance(item, str):
            raise PayloadError(422, f"{where}.{key[:40]}: expected a string")
        if len(item) > MAX_VALUE_CHARS:
            raise PayloadError(422, f"{where}.{key[:40]}: longer than {MAX_VALUE_CHARS} characters")
        if label_names and _CONTROL.search(item):
            raise PayloadError(422, f"{where}.{key[:40]}: control characters in a label value")
        out[key] = item
    return out


def fallback_fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager sends `fingerprint`; older senders do not: hash the sorted label set."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_alert(item: Any, index: int) -> Alert:
    where = f"alerts[{index}]"
    if not isinstance(item, dict):
        raise PayloadError(422, f"{where}: expected an object")
    status = item.get("status")
    if status not in ("firing", "resolved"):
        raise PayloadError(422, f'{where}.status: expected "firing" or "resolved"')
    labels = _string_map(item.get("labels"), f"{where}.labels", label_names=True)
    annotations = _string_map(item.get("annotations"), f"{where}.annotations", label_names=False)
    starts_at = parse_time(item.get("startsAt"), f"{where}.startsAt")
    if starts_at is None:
        raise PayloadError(422, f"{where}.startsAt: the zero time is not a start")
    ends_at = parse_time(item.get("endsAt", "0001-01-01T00:00:00Z"), f"{where}.endsAt")
    instance = labels.get("instance")
    if status == "firing" and not instance:
        raise PayloadError(422, f"{where}.labels: no instance label: netdoctor diagnoses one host per alert")
    if instance is not None and not INSTANCE.match(instance):
        raise PayloadError(422, f"{where}.labels.instance: {instance[:60]!r} is not a host[:port] target")
    fingerprint = item.get("fingerprint")
    if fingerprint is None or fingerprint == "":
        fingerprint = fallback_fingerprint(labels)
    if not isinstance(fingerprint, str) or not re.fullmatch(r"[0-9a-fA-F]{1,64}", fingerprint):
        raise PayloadError(422, f"{where}.fingerprint: expected a hex string")
    generator = item.get("generatorURL", "")
    if not isinstance(generator, str) or len(generator) > MAX_VALUE_CHARS:
        raise PayloadError(422, f"{where}.generatorURL: expected a string")
    return Alert(
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint=fingerprint.lower(),
        generator_url=generator,
        starts_at_text=item["startsAt"],
    )


def parse_notification(body: bytes) -> Notification:
    """The request body -> a Notification, or PayloadError (400 not JSON, 422 wrong shape)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise PayloadError(400, "body is not UTF-8") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise PayloadError(400, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError(422, "expected a JSON object (an Alertmanager webhook payload)")
    version = data.get("version")
    if version != SUPPORTED_VERSION:
        raise PayloadError(422, f"payload version {str(version)[:10]!r}: only Alertmanager's version 4 is supported")
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError(422, "alerts: expected a list")
    if len(alerts) > MAX_ALERTS_PER_PAYLOAD:
        raise PayloadError(413, f"{len(alerts)} alerts in one payload (at most {MAX_ALERTS_PER_PAYLOAD})")
    parsed = [parse_alert(item, i) for i, item in enumerate(alerts)]

    def text(key: str) -> str:
        value = data.get(key, "")
        return value if isinstance(value, str) else ""

    return Notification(
        alerts=parsed,
        receiver=text("receiver"),
        status=text("status"),
        group_key=text("groupKey"),
        external_url=text("externalURL"),
        common_labels=_string_map(data.get("commonLabels"), "commonLabels", label_names=True),
    )
