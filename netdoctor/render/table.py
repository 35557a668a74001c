"""The terminal table: rank, severity, finding, entity, key evidence, suggested fix."""

from __future__ import annotations

import shutil
import textwrap

from netdoctor.model import Diagnosis, Status
from netdoctor.render.common import exit_meaning, first_fix, key_evidence, ranked

# Share of the spare width each wrapped column gets.
_COLUMN_SHARE = {"finding": 0.34, "evidence": 0.36, "fix": 0.30}


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width=max(width, 8))) or ""


def render_table(diagnosis: Diagnosis, width: int | None = None) -> str:
    from tabulate import tabulate

    width = width or shutil.get_terminal_size((120, 24)).columns
    fixed = 6 + 9 + 22 + 6 * 3  # rank, severity, entity, separators
    spare = max(width - fixed, 40)
    cols = {name: int(spare * share) for name, share in _COLUMN_SHARE.items()}
    rows = []
    for label, depth, finding in ranked(diagnosis):
        if finding.status is Status.HEALTHY:
            continue
        prefix = ("  " * (depth - 1) + "└ ") if depth else ""
        summary = prefix + ("explained by: " if depth else "") + f"{finding.check}: {finding.summary}"
        rows.append(
            [
                label,
                finding.severity.label,
                _wrap(summary, cols["finding"]),
                _wrap(str(finding.entity), 22),
                _wrap(key_evidence(finding), cols["evidence"]),
                _wrap(first_fix(finding), cols["fix"]),
            ]
        )
    healthy = [f.check for f in diagnosis.findings if f.status is Status.HEALTHY]
    lines = [
        f"netdoctor diagnosis of {diagnosis.host or 'this host'} ({diagnosis.source}"
        + (f", {diagnosis.interval_s:.1f}s window)" if diagnosis.interval_s else ")")
    ]
    if rows:
        lines.append(
            tabulate(
                rows,
                headers=["rank", "severity", "finding", "entity", "key evidence", "suggested fix"],
                tablefmt="simple",
            )
        )
    else:
        lines.append("No problem found.")
    # --- history (Prometheus source only): when each problem started / peaked, with a sparkline ---
    from netdoctor.render.sparkline import history_lines

    lines.extend(history_lines(diagnosis))
    # --- end history ---
    if healthy:
        lines.append("healthy: " + ", ".join(healthy))
    for problem in diagnosis.problems:
        lines.append(f"note: {problem}")
    code = diagnosis.exit_code()
    lines.append(f"status: {exit_meaning(code)} (exit {code})")
    return "\n".join(lines) + "\n"
