"""Markdown, for people: reports, tickets, chat."""

from __future__ import annotations

from netdoctor.model import Diagnosis, Status
from netdoctor.render.common import exit_meaning, first_fix, ranked


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(diagnosis: Diagnosis) -> str:
    code = diagnosis.exit_code()
    lines = [
        f"# netdoctor diagnosis: {exit_meaning(code)}",
        "",
        f"- host: {diagnosis.host or 'unknown'}",
        f"- source: {diagnosis.source}",
    ]
    if diagnosis.interval_s:
        lines.append(f"- window: {diagnosis.interval_s:.1f} s")
    lines.append("")
    problems = [(label, depth, f) for label, depth, f in ranked(diagnosis) if f.status is Status.PROBLEM]
    if problems:
        lines += ["| rank | severity | finding | entity | suggested fix |", "|---|---|---|---|---|"]
        for label, depth, finding in problems:
            summary = ("↳ explained by: " if depth else "") + finding.summary
            fix = first_fix(finding)
            lines.append(
                f"| {label} | {finding.severity.label} | {_escape(summary)} | {_escape(str(finding.entity))} | "
                f"{'`' + _escape(fix) + '`' if fix else ''} |"
            )
        lines.append("")
        lines.append("## Evidence")
        for label, _, finding in problems:
            lines.append(f"### {label}. {finding.summary}")
            for evidence in finding.evidence:
                lines.append(f"- {evidence.describe()}")
            for fix in finding.fixes:
                lines.append(f"- fix: {fix.summary}" + (f" — `{fix.command}`" if fix.command else ""))
            lines.append("")
    else:
        lines += ["No problem found.", ""]
    others = [f for f in diagnosis.findings if f.status is not Status.PROBLEM]
    if others:
        lines.append("## Other checks")
        for finding in others:
            lines.append(f"- **{finding.check}** ({finding.status.value}): {finding.summary}")
        lines.append("")
    if diagnosis.problems:
        lines.append("## Notes")
        lines += [f"- {problem}" for problem in diagnosis.problems]
        lines.append("")
    return "\n".join(lines)
