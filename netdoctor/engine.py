"""Run the checks on a View, link symptoms to causes, and rank: root cause first.

Score (documented in the README, deterministic):

    score = severity_weight × confidence × (1 + log10(max(magnitude, 1)))

with severity_weight CRITICAL 100, WARNING 10, UNKNOWN 1, OK 0. A root's rank uses the
highest score among itself and the symptoms nested under it, so a cause that explains
a critical symptom ranks with that symptom's weight. Ties break on check id, then
entity name, so the order is stable from run to run.

Correlation: a finding F is "explained by" a present problem G when G's tag reaches
F's tag along `netdoctor.causes.CAUSAL_EDGES` and their entities are compatible (same
entity, or either is about the whole host, or one is an interface/CPU the other
names). F is nested under the G closest to it in the graph.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from netdoctor.causes import CAUSAL_EDGES
from netdoctor.check import CheckSpec
from netdoctor.errors import UsageError
from netdoctor.model import Diagnosis, EntityKind, Finding, Severity, Status
from netdoctor.view import View

ENTRY_POINT_GROUP = "netdoctor.checks"
SEVERITY_WEIGHT = {Severity.CRITICAL: 100.0, Severity.WARNING: 10.0, Severity.UNKNOWN: 1.0, Severity.OK: 0.0}


@dataclass
class CheckSet:
    specs: list[CheckSpec]
    load_errors: list[str] = field(default_factory=list)


def _builtin_specs() -> tuple[list[CheckSpec], list[str]]:
    from netdoctor.checks import BUILTIN

    specs, errors = [], []
    for name in BUILTIN:
        try:
            module = importlib.import_module(f"netdoctor.checks.{name}")
            specs.append(CheckSpec.from_object(module))
        except Exception as exc:  # a broken built-in must not take the diagnosis down
            errors.append(f"built-in check {name} failed to load: {exc}")
    return specs, errors


def _entry_point_specs() -> tuple[list[CheckSpec], list[str]]:
    specs, errors = [], []
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            specs.append(CheckSpec.from_object(entry.load(), origin=f"entry point {entry.value}"))
        except Exception as exc:
            errors.append(f"check plugin {entry.name} ({entry.value}) failed to load: {exc}")
    return specs, errors


def _dir_specs(directory: Path) -> tuple[list[CheckSpec], list[str]]:
    if not directory.is_dir():
        raise UsageError(f"--checks-dir {directory}: not a directory")
    specs, errors = [], []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module_name = f"netdoctor_dropin_{path.stem}"
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise ImportError("not importable")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
            specs.append(CheckSpec.from_object(module, origin=str(path)))
        except Exception as exc:
            errors.append(f"check {path} failed to load: {exc}")
    return specs, errors


def load_checks(
    checks_dirs: Sequence[Path] = (),
    only: Sequence[str] | None = None,
    use_entry_points: bool = True,
) -> CheckSet:
    """Built-ins, then entry-point plugins, then drop-in folders; a later id replaces an earlier one."""
    by_id: dict[str, CheckSpec] = {}
    errors: list[str] = []
    sources = [_builtin_specs()]
    if use_entry_points:
        sources.append(_entry_point_specs())
    sources.extend(_dir_specs(Path(d)) for d in checks_dirs)
    for specs, load_errors in sources:
        errors.extend(load_errors)
        for spec in specs:
            by_id[spec.id] = spec
    if only:
        unknown = [check_id for check_id in only if check_id not in by_id]
        if unknown:
            raise UsageError(f"unknown check(s): {', '.join(unknown)}; known: {', '.join(sorted(by_id))}")
        return CheckSet([by_id[check_id] for check_id in only], errors)
    return CheckSet(list(by_id.values()), errors)


def run_check(spec: CheckSpec, view: View, overrides: Mapping[str, Any] | None = None) -> list[Finding]:
    """One check; whatever it raises becomes an ERROR finding, never a crash of the run."""
    thresholds = {**spec.thresholds, **(overrides or {})}
    try:
        findings = spec.run(view, thresholds)
        if not isinstance(findings, list) or not all(isinstance(f, Finding) for f in findings):
            raise TypeError(f"run() returned {type(findings).__name__}, not a list of Finding")
        if not findings:
            return [Finding.cannot_judge(spec.id, "the check returned no finding")]
        return findings
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        place = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
        return [
            Finding(
                check=spec.id,
                severity=Severity.UNKNOWN,
                summary=f"check failed: {type(exc).__name__}: {exc}{place}",
                status=Status.ERROR,
                confidence=0.0,
            )
        ]


def score(finding: Finding) -> float:
    magnitude = finding.magnitude if math.isfinite(finding.magnitude) else 1.0
    confidence = min(max(finding.confidence, 0.0), 1.0) if math.isfinite(finding.confidence) else 0.0
    return SEVERITY_WEIGHT[finding.severity] * confidence * (1.0 + math.log10(max(magnitude, 1.0)))


@cache
def _distance(cause: str, symptom: str) -> int | None:
    """Edges from cause to symptom in the causal graph, or None when unreachable."""
    frontier, seen, depth = [cause], {cause}, 0
    while frontier:
        depth += 1
        nxt = []
        for node in frontier:
            for child in CAUSAL_EDGES.get(node, ()):
                if child == symptom:
                    return depth
                if child not in seen:
                    seen.add(child)
                    nxt.append(child)
        frontier = nxt
    return None


def _entities_compatible(cause: Finding, symptom: Finding) -> bool:
    a, b = cause.entity, symptom.entity
    if a == b or EntityKind.HOST in (a.kind, b.kind):
        return True
    # e.g. an interface cause and a CPU symptom: linked when the cause's evidence names that entity.
    mentioned = {v for e in cause.evidence for v in e.labels.values()} | {cause.summary}
    return any(b.name == m or b.name in m for m in mentioned)


def _best_cause(symptom: Finding, candidates: Iterable[Finding]) -> Finding | None:
    best: tuple[int, float, str] | None = None
    chosen = None
    for cause in candidates:
        if cause is symptom:
            continue
        distances = [d for ct in cause.tags for st in symptom.tags if (d := _distance(ct, st)) is not None]
        if not distances or not _entities_compatible(cause, symptom):
            continue
        key = (min(distances), -score(cause), f"{cause.check}/{cause.entity.name}")
        if best is None or key < best:
            best, chosen = key, cause
    return chosen


def _sort_key(finding: Finding) -> tuple[float, int, str, str]:
    group_score = max([score(finding)] + [score(f) for f in finding.explained_by])
    return (-group_score, -int(finding.severity), finding.check, finding.entity.name)


def correlate(findings: list[Finding]) -> list[Finding]:
    """Nest each symptom under its closest present cause; return the roots, ranked."""
    problems = [f for f in findings if f.status is Status.PROBLEM]
    parent: dict[int, Finding] = {}
    for symptom in problems:
        cause = _best_cause(symptom, problems)
        if cause is not None:
            parent[id(symptom)] = cause
    # Break cycles (A explains B explains A): the higher-scored one stays the root.
    for symptom in problems:
        seen = {id(symptom)}
        node = parent.get(id(symptom))
        while node is not None:
            if id(node) in seen:
                del parent[id(symptom)]
                break
            seen.add(id(node))
            node = parent.get(id(node))
    for finding in findings:
        finding.explained_by = []
    for symptom in problems:
        cause = parent.get(id(symptom))
        if cause is not None:
            cause.explained_by.append(symptom)

    def sort_tree(nodes: list[Finding]) -> list[Finding]:
        for node in nodes:
            node.explained_by = sort_tree(node.explained_by)
        return sorted(nodes, key=_sort_key)

    roots = [f for f in findings if id(f) not in parent]
    return sort_tree(roots)


def diagnose(
    view: View,
    checks: CheckSet,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Diagnosis:
    findings: list[Finding] = []
    for spec in checks.specs:
        findings.extend(run_check(spec, view, (overrides or {}).get(spec.id)))
    meta = getattr(view, "meta", {}) or {}
    taken_at = _taken_at(meta)  # live and captures; a Prometheus view carries its own `at`
    return Diagnosis(
        findings=correlate(findings),
        source=view.source,
        interval_s=view.interval_s,
        problems=list(checks.load_errors) + view.problems,
        host=str(meta.get("hostname", "")),
        at=taken_at if taken_at is not None else getattr(view, "at", None),
    )


def _taken_at(meta: Mapping[str, Any]) -> float | None:
    """Wall time of the view's last sample (live and captures record both samples' times)."""
    taken = meta.get("taken_at")
    if isinstance(taken, (list, tuple)) and taken and isinstance(taken[-1], (int, float)):
        return float(taken[-1])
    return None
