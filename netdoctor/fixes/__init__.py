"""Safe remediation: plan, diff, preconditions, apply, verify, persist, journal, roll back."""

from __future__ import annotations

import os

from netdoctor.fixes.plans import FixContext
from netdoctor.fixes.writer import Writer
from netdoctor.model import Finding, Status


def build_context(root: str, interval_s: float, with_findings: bool = True) -> FixContext:
    """Read the host (or tree) under `root`: its inventory and, for defaults, a diagnosis."""
    from netdoctor.engine import diagnose, load_checks
    from netdoctor.sources.live import LiveSource

    view = LiveSource(root=root, interval_s=interval_s).view()
    findings: list[Finding] = []
    if with_findings:
        diagnosis = diagnose(view, load_checks())
        findings = [f for f in diagnosis.all_findings() if f.status is Status.PROBLEM]
    return FixContext(
        writer=Writer(root),
        inventory=view.inventory,
        findings=findings,
        memory_bytes=view.gauge_value("node_memory_MemTotal_bytes"),
    )


def require_root(root: str) -> str | None:
    """Why this user may not change `root`, or None."""
    if os.path.abspath(root) == "/" and os.geteuid() != 0:
        return "netdoctor fix changes kernel settings and needs root (run with sudo); --dry-run works without"
    if not os.access(root, os.W_OK):
        return f"{root} is not writable by this user"
    return None
