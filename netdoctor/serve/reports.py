"""Report files: one Markdown (people) and one JSON (machines) per alert, written atomically.

Why the naming: a report's id is a hash of the alert's fingerprint and its start time,
so (a) no label value ever becomes a path, (b) a repeated notification of the same alert
maps to the same report and reuses it, and (c) the id is stable across restarts — the
directory *is* the state; a restart rebuilds the index by reading it.

Why atomic: a report is written to a temporary file in the same directory, fsynced and
renamed over its final name, so a reader (or a crash) sees the old report or the new
one, never half of one. The JSON is written last: a report listed in the index always
has its Markdown beside it.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netdoctor.model import Diagnosis, Status
from netdoctor.serve.payload import Alert

REPORT_SCHEMA = "netdoctor.report/v1"
REPORT_ID = re.compile(r"^[0-9a-f]{20}$")
_TMP_PREFIX = ".tmp-"


def report_id(alert: Alert) -> str:
    """20 hex characters from fingerprint + startsAt: the same alert episode, the same report."""
    key = f"{alert.fingerprint}|{alert.starts_at:.3f}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old or the new content, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def alert_dict(alert: Alert) -> dict[str, Any]:
    return {
        "name": alert.name,
        "instance": alert.instance,
        "status": alert.status,
        "fingerprint": alert.fingerprint,
        "starts_at": alert.starts_at,
        "starts_at_text": alert.starts_at_text or iso(alert.starts_at),
        "ends_at": alert.ends_at,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "generator_url": alert.generator_url,
    }


def _md(text: str) -> str:
    """Label text inside Markdown: no line breaks, no table pipes, no raw backticks."""
    return text.replace("\r", " ").replace("\n", " ").replace("|", "\\|").replace("`", "'")


def top_finding(diagnosis: Diagnosis) -> dict[str, Any] | None:
    for finding in diagnosis.findings:
        if finding.status is Status.PROBLEM:
            return {
                "check": finding.check,
                "severity": finding.severity.label,
                "summary": finding.summary,
                "entity": str(finding.entity),
            }
    return None


def key_series_lines(diagnosis: Diagnosis) -> list[str]:
    """One line per problem with history: when it started, peaked, and its sparkline."""
    from netdoctor.render.common import ranked
    from netdoctor.render.sparkline import history_cells

    lines = []
    for label, _depth, finding in ranked(diagnosis):
        if finding.status is not Status.PROBLEM:
            continue
        started, peaked, spark = history_cells(finding)
        if not (started or peaked or spark):
            continue
        lines.append(
            f"- {label}. **{_md(finding.check)}** ({_md(str(finding.entity))}): started {started or '?'}, "
            f"peaked {peaked or '?'} `{spark}`"
        )
    return lines


def render_report_markdown(record: dict[str, Any], diagnosis: Diagnosis | None) -> str:
    """The report people read: the alert, then the ranked diagnosis, key series and fixes."""
    from netdoctor.render import render

    alert = record["alert"]
    lines = [
        f"# {_md(alert['name'] or 'alert')} on {_md(alert['instance'])}",
        "",
        f"- alert: **{_md(alert['name'])}** ({_md(alert['labels'].get('severity', 'no severity'))})",
        f"- instance: `{_md(alert['instance'])}`",
        f"- started: {iso(alert['starts_at'])}",
        f"- fingerprint: `{alert['fingerprint']}`",
        f"- report: `{record['id']}`, written {iso(record['updated_at'])}",
    ]
    for key in ("summary", "description"):
        if alert["annotations"].get(key):
            lines.append(f"- {key}: {_md(alert['annotations'][key])}")
    if alert["annotations"].get("runbook_url"):
        lines.append(f"- runbook: <{_md(alert['annotations']['runbook_url'])}>")
    if alert["generator_url"]:
        lines.append(f"- source: <{_md(alert['generator_url'])}>")
    lines.append("")
    if diagnosis is None:
        lines += ["## Diagnosis failed", "", f"netdoctor could not diagnose this alert: {_md(record['error'] or '')}"]
        lines += ["", "The next notification of this alert retries the diagnosis.", ""]
        return "\n".join(lines)
    body = render(diagnosis, "markdown")
    # The diagnosis' own title becomes a section of the report.
    lines.append(body.replace("# netdoctor diagnosis", "## netdoctor diagnosis", 1).rstrip("\n"))
    series = key_series_lines(diagnosis)
    if series:
        lines += ["", "## Key series (lookback)", *series]
    if record.get("autofix"):
        lines += ["", "## Automatic fixes", f"- {_md(record['autofix'])}"]
    lines.append("")
    return "\n".join(lines)


def resolution_markdown(ends_at: float | None, received_at: float) -> str:
    when = iso(ends_at) if ends_at else f"(no endsAt; resolved notification received {iso(received_at)})"
    return f"\n## Resolved\n\n- resolved at: {when}\n"


@dataclass
class IndexEntry:
    """What `GET /reports` lists for one report."""

    id: str
    created_at: float
    updated_at: float
    alert: str
    instance: str
    state: str
    resolved_at: float | None
    top: dict[str, Any] | None = None
    notifications: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "alert": self.alert,
            "instance": self.instance,
            "state": self.state,
            "resolved_at": self.resolved_at,
            "top_finding": self.top,
            "notifications": self.notifications,
        }


def _entry(record: dict[str, Any]) -> IndexEntry:
    return IndexEntry(
        id=record["id"],
        created_at=float(record["created_at"]),
        updated_at=float(record["updated_at"]),
        alert=str(record["alert"]["name"]),
        instance=str(record["alert"]["instance"]),
        state=str(record["state"]),
        resolved_at=record.get("resolved_at"),
        top=record.get("top_finding"),
        notifications=int(record.get("notifications", 1)),
    )


@dataclass
class ReportStore:
    """The reports directory and an in-memory index of it (rebuilt from disk at start)."""

    directory: Path
    index: dict[str, IndexEntry] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)
    pending_resolutions: dict[str, tuple[float | None, float]] = field(default_factory=dict)
    load_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._load()

    def _load(self) -> None:
        for stale in self.directory.glob(_TMP_PREFIX + "*"):
            stale.unlink(missing_ok=True)  # a write interrupted by a crash: never a report
        for path in self.directory.glob("*.json"):
            if not REPORT_ID.match(path.stem):
                continue
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                self.index[path.stem] = _entry(record)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.load_errors.append(f"{path.name}: {exc}")

    # -- paths ---------------------------------------------------------------------------
    def path(self, rid: str, ext: str) -> Path:
        if not REPORT_ID.match(rid) or ext not in ("json", "md"):
            raise KeyError(rid)
        return self.directory / f"{rid}.{ext}"

    def read_record(self, rid: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(rid, "json").read_text(encoding="utf-8"))
        except (KeyError, FileNotFoundError):
            return None

    def read_markdown(self, rid: str) -> str | None:
        try:
            return self.path(rid, "md").read_text(encoding="utf-8")
        except (KeyError, FileNotFoundError):
            return None

    # -- deduplication -------------------------------------------------------------------
    def claim(self, alert: Alert) -> tuple[str, bool]:
        """(report id, whether this notification needs a diagnosis).

        A report already written (and not failed) is reused: its notification count goes
        up and nothing is queued. A report being worked on is not queued twice.
        """
        rid = report_id(alert)
        with self._lock:
            if rid in self.in_flight:
                return rid, False
            entry = self.index.get(rid)
            if entry is not None and entry.state != "error":
                self._count_notification(rid)
                return rid, False
            self.in_flight.add(rid)
            return rid, True

    def release(self, rids: list[str]) -> None:
        """Undo claims whose jobs were not queued (queue full: Alertmanager will retry)."""
        with self._lock:
            for rid in rids:
                self.in_flight.discard(rid)

    def _count_notification(self, rid: str) -> None:
        record = self.read_record(rid)
        if record is None:
            return
        record["notifications"] = int(record.get("notifications", 1)) + 1
        record["last_notified_at"] = time.time()
        atomic_write(self.path(rid, "json"), json.dumps(record, indent=2) + "\n")
        self.index[rid] = _entry(record)

    # -- writing -------------------------------------------------------------------------
    def write(
        self,
        alert: Alert,
        diagnosis: Diagnosis | None,
        *,
        error: str | None = None,
        autofix: str = "",
    ) -> dict[str, Any]:
        """Write (or rewrite) the report of `alert`; returns its JSON record."""
        from netdoctor.render.json_out import diagnosis_dict

        rid = report_id(alert)
        now = time.time()
        with self._lock:
            previous = self.read_record(rid)
            record: dict[str, Any] = {
                "schema": REPORT_SCHEMA,
                "id": rid,
                "created_at": previous["created_at"] if previous else now,
                "updated_at": now,
                "state": "done" if diagnosis is not None else "error",
                "error": error,
                "notifications": int(previous.get("notifications", 0)) + 1 if previous else 1,
                "resolved_at": None,
                "alert": alert_dict(alert),
                "top_finding": top_finding(diagnosis) if diagnosis is not None else None,
                "autofix": autofix,
                "diagnosis": diagnosis_dict(diagnosis) if diagnosis is not None else None,
            }
            markdown = render_report_markdown(record, diagnosis)
            pending = self.pending_resolutions.pop(rid, None)
            if pending is not None:
                record["resolved_at"] = pending[0] or pending[1]
                markdown += resolution_markdown(*pending)
            atomic_write(self.path(rid, "md"), markdown)
            atomic_write(self.path(rid, "json"), json.dumps(record, indent=2) + "\n")
            self.index[rid] = _entry(record)
            self.in_flight.discard(rid)
            return record

    def resolve(self, alert: Alert) -> str:
        """Append the end of a resolved alert to its report (once); remember it if not written yet."""
        rid = report_id(alert)
        received = time.time()
        with self._lock:
            record = self.read_record(rid)
            if record is None:
                if rid in self.in_flight:
                    self.pending_resolutions[rid] = (alert.ends_at, received)
                    return "pending"
                return "unknown"
            if record.get("resolved_at") is not None:
                return "already"
            markdown = (self.read_markdown(rid) or "") + resolution_markdown(alert.ends_at, received)
            record["resolved_at"] = alert.ends_at or received
            record["alert"]["status"] = "resolved"
            record["alert"]["ends_at"] = alert.ends_at
            record["updated_at"] = received
            atomic_write(self.path(rid, "md"), markdown)
            atomic_write(self.path(rid, "json"), json.dumps(record, indent=2) + "\n")
            self.index[rid] = _entry(record)
            return "resolved"

    # -- reading -------------------------------------------------------------------------
    def newest_first(self) -> list[IndexEntry]:
        with self._lock:
            return sorted(self.index.values(), key=lambda e: (-e.created_at, e.id))

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self) -> Iterator[IndexEntry]:
        return iter(self.newest_first())


# ---- HTML --------------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:left}}
code{{background:#f4f4f4}}</style></head><body>
{body}
</body></html>
"""


def _inline(text: str) -> str:
    """Escape, then the few inline forms reports use: `code`, **bold**, <links>."""
    out = html.escape(text, quote=True)
    out = re.sub(r"`([^`]*)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(
        r"&lt;(https?://[^\s&]+(?:&amp;[^\s&]+)*)&gt;",
        lambda m: f'<a href="{m.group(1)}" rel="noreferrer">{m.group(1)}</a>',
        out,
    )
    return out


def markdown_to_html(markdown: str, title: str) -> str:
    """The Markdown serve writes, as a standalone page. Every character of input is escaped."""
    body: list[str] = []
    in_list = in_table = False
    for raw in markdown.splitlines():
        line = raw.rstrip()
        if in_list and not line.startswith("- "):
            body.append("</ul>")
            in_list = False
        if in_table and not line.startswith("|"):
            body.append("</table>")
            in_table = False
        if not line:
            continue
        heading = re.match(r"^(#{1,6}) (.*)$", line)
        if heading:
            level = len(heading.group(1))
            body.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.startswith("- "):
            if not in_list:
                body.append("<ul>")
                in_list = True
            body.append(f"<li>{_inline(line[2:])}</li>")
        elif line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if all(re.fullmatch(r"-{3,}", c) for c in cells):
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                body.append("<table>")
                in_table = True
            body.append("<tr>" + "".join(f"<{tag}>{_inline(c)}</{tag}>" for c in cells) + "</tr>")
        else:
            body.append(f"<p>{_inline(line)}</p>")
    if in_list:
        body.append("</ul>")
    if in_table:
        body.append("</table>")
    return _PAGE.format(title=html.escape(title), body="\n".join(body))


def index_html(entries: list[IndexEntry]) -> str:
    rows = []
    for entry in entries:
        top = entry.top or {}
        cause = f"{top.get('check', '')}: {top.get('summary', '')}" if top else entry.state
        rows.append(
            "<tr>"
            f'<td><a href="/reports/{entry.id}">{entry.id}</a></td>'
            f"<td>{html.escape(iso(entry.created_at))}</td>"
            f"<td>{html.escape(entry.alert)}</td>"
            f"<td>{html.escape(entry.instance)}</td>"
            f"<td>{html.escape(cause)}</td>"
            f"<td>{html.escape(iso(entry.resolved_at)) if entry.resolved_at else 'firing'}</td>"
            "</tr>"
        )
    table = (
        "<table><tr><th>report</th><th>created</th><th>alert</th><th>instance</th>"
        "<th>top finding</th><th>resolved</th></tr>" + "".join(rows) + "</table>"
    )
    return _PAGE.format(title="netdoctor reports", body=f"<h1>netdoctor reports</h1>\n{table}")
