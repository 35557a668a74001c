"""What every renderer shows the same way: ranks, key evidence, the first fix."""

from __future__ import annotations

from collections.abc import Iterator

from netdoctor.model import Diagnosis, Finding, Status


def ranked(diagnosis: Diagnosis) -> Iterator[tuple[str, int, Finding]]:
    """(rank label "1", "1.1", ..., depth, finding) in display order; healthy ones last, unranked."""
    problems = [f for f in diagnosis.findings if f.status is Status.PROBLEM]
    others = [f for f in diagnosis.findings if f.status is not Status.PROBLEM]

    def walk(finding: Finding, label: str, depth: int) -> Iterator[tuple[str, int, Finding]]:
        yield label, depth, finding
        for index, child in enumerate(finding.explained_by, start=1):
            yield from walk(child, f"{label}.{index}", depth + 1)

    for index, finding in enumerate(problems, start=1):
        yield from walk(finding, str(index), 0)
    for finding in others:
        yield "-", 0, finding


def key_evidence(finding: Finding, limit: int = 2) -> str:
    return "; ".join(e.describe() for e in finding.evidence[:limit])


def first_fix(finding: Finding) -> str:
    if not finding.fixes:
        return ""
    fix = finding.fixes[0]
    return fix.command or fix.summary


def exit_meaning(code: int) -> str:
    return {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}[code]
