"""What a worker does with one alert: diagnose its instance at its start, write the report.

`diagnose_alert(alert) -> Diagnosis` is the one diagnosis step: the alert's `instance`
read from Prometheus history at `startsAt` (PrometheusSource: escaped label values,
one query per diagnosis), the checks run, each finding dated (started / peaked) with
its sparkline. It is built once per server by `make_diagnose_alert`, so the HTTP side
and the tests share it.

Fixes: serve never applies one. A `[serve.autofix]` entry naming an alert and fix ids
only makes the report list those fixes' commands as pre-approved for that alert — the
fix machinery writes to the local host, and serve usually runs on another one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netdoctor.errors import NetdoctorError
from netdoctor.model import Diagnosis, FixSuggestion, Status
from netdoctor.serve.forward import Forwarder
from netdoctor.serve.payload import Alert
from netdoctor.serve.queue import Job
from netdoctor.serve.reports import ReportStore

log = logging.getLogger("netdoctor.serve")

DiagnoseAlert = Callable[[Alert], Diagnosis]


@dataclass
class ServeSettings:
    """Everything `netdoctor serve` is configured with (flags and the [serve] config table)."""

    prometheus_url: str
    reports_dir: Path
    host: str = "127.0.0.1"
    port: int = 9095
    token: str | None = None
    forward_url: str | None = None
    public_url: str = ""
    window_s: float = 300.0
    lookback_s: float = 3600.0
    timeout_s: float = 30.0
    workers: int = 2
    queue_size: int = 256
    max_body_bytes: int = 1 << 20
    drain_timeout_s: float = 120.0
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks_dirs: list[str] = field(default_factory=list)
    autofix: dict[str, list[str]] = field(default_factory=dict)
    prometheus_bearer_token_file: str | None = None


def make_diagnose_alert(settings: ServeSettings, checks: Any = None) -> DiagnoseAlert:
    """The diagnosis step: Prometheus history of the alert's instance at its start."""
    from netdoctor.engine import load_checks
    from netdoctor.sources.prometheus import Auth, PrometheusSource, diagnose_instance

    loaded = checks if checks is not None else load_checks([Path(d) for d in settings.checks_dirs])
    auth = Auth(bearer_token_file=settings.prometheus_bearer_token_file)

    def diagnose_alert(alert: Alert) -> Diagnosis:
        # startsAt is when the alert fired: its condition held over the window then.
        at = min(alert.starts_at, time.time())
        source = PrometheusSource(
            settings.prometheus_url,
            alert.instance,
            at=at,
            window_s=settings.window_s,
            lookback_s=settings.lookback_s,
            timeout_s=settings.timeout_s,
            auth=auth,
        )
        return diagnose_instance(source, loaded, settings.overrides)

    return diagnose_alert


def allowed_fixes(policy: Mapping[str, Sequence[str]], alert: Alert, diagnosis: Diagnosis) -> list[FixSuggestion]:
    """The diagnosis' fixes that the config pre-approves for this alert name (by fix id)."""
    wanted = set(policy.get(alert.name, ()))
    if not wanted:
        return []
    return [
        fix
        for finding in diagnosis.all_findings()
        if finding.status is Status.PROBLEM
        for fix in finding.fixes
        if fix.fix_id in wanted
    ]


def autofix_note(policy: Mapping[str, Sequence[str]], alert: Alert, diagnosis: Diagnosis) -> str:
    fixes = allowed_fixes(policy, alert, diagnosis)
    if not fixes:
        return ""
    commands = "; ".join(f"`{fix.command or fix.fix_id}`" for fix in fixes)
    return f"pre-approved for {alert.name} by [serve.autofix], not applied by serve (run on the host): {commands}"


@dataclass
class AlertWorker:
    """The queue's job handler: diagnose, write the report, forward its summary."""

    store: ReportStore
    diagnose_alert: DiagnoseAlert
    forwarder: Forwarder | None = None
    autofix: dict[str, list[str]] = field(default_factory=dict)

    def __call__(self, job: Job) -> None:
        alert: Alert = job.alert
        try:
            try:
                diagnosis = self.diagnose_alert(alert)
            except NetdoctorError as exc:
                log.warning("cannot diagnose %s on %s: %s", alert.name, alert.instance, exc)
                record = self.store.write(alert, None, error=str(exc))
            except Exception as exc:  # a bug in a check or source must still leave a report
                log.exception("diagnosis of %s on %s failed", alert.name, alert.instance)
                record = self.store.write(alert, None, error=f"internal error: {type(exc).__name__}: {exc}")
            else:
                record = self.store.write(alert, diagnosis, autofix=autofix_note(self.autofix, alert, diagnosis))
        finally:
            self.store.release([job.report_id])
        if self.forwarder is not None:
            self.forwarder.submit(record)
