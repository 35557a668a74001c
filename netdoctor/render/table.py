"""The terminal table: rank, severity, finding, entity, key evidence, suggested fix."""

from __future__ import annotations

import shutil

from netdoctor.model import Diagnosis, Status
from netdoctor.render.common import exit_meaning, first_fix, key_evidence, ranked

# Share of the spare width each wrapped column gets.
_COLUMN_SHARE = {"finding": 0.42, "evidence": 0.33, "fix": 0.25}


def _wrap(text: str, width: int) -> str:
    """Wrap at spaces; split over-long words (metric names) at "_", ".", "," or "/" before cutting them."""
    width = max(width, 8)
    pieces: list[tuple[str, bool]] = []  # (text, continues the previous piece without a space)
    for word in text.split():
        glued = False
        while len(word) > width:
            cut = max(word.rfind(sep, 0, width) for sep in "_.,/=")
            cut = cut + 1 if cut > 0 else width
            pieces.append((word[:cut], glued))
            word, glued = word[cut:], True
        pieces.append((word, glued))
    lines: list[str] = []
    for piece, glued in pieces:
        joiner = "" if glued else " "
        if lines and len(lines[-1]) + len(joiner) + len(piece) <= width:
            lines[-1] += joiner + piece
        else:
            lines.append(piece)
    return "\n".join(lines)


def render_table(diagnosis: Diagnosis, width: int | None = None) -> str:
    from tabulate import tabulate

    width = width or shutil.get_terminal_size((120, 24)).columns
    fixed = 6 + 9 + 18 + 6 * 3  # rank, severity, entity, separators
    spare = max(width - fixed, 60)
    cols = {name: max(int(spare * share), 16) for name, share in _COLUMN_SHARE.items()}
    rows = []
    for label, depth, finding in ranked(diagnosis):
        if finding.status is Status.HEALTHY:
            continue
        prefix = ("  " * (depth - 1) + "└ ") if depth else ""
        summary = prefix + f"{finding.check}: {finding.summary}"
        rows.append(
            [
                label,
                finding.severity.label,
                _wrap(summary, cols["finding"]),
                _wrap(str(finding.entity), 18),
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
                disable_numparse=True,  # ranks "1", "1.1" are labels, not numbers to right-align
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
    not_judged = diagnosis.not_judged()
    lines.append(
        f"status: {exit_meaning(code)} (exit {code})"
        + (f"; could not judge: {', '.join(not_judged)}" if not_judged else "")
    )
    return "\n".join(lines) + "\n"
