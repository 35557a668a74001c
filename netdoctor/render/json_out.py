"""JSON output, schema `netdoctor.diagnosis/v1` (documented in README "JSON output").

Versioned so that consumers can rely on it: fields are only ever added within v1.
"""

from __future__ import annotations

import json
import math
from typing import Any

from netdoctor.engine import score
from netdoctor.model import Diagnosis, Finding
from netdoctor.render.common import exit_meaning, ranked

SCHEMA = "netdoctor.diagnosis/v1"


def _number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value


def finding_dict(finding: Finding, rank: str | None = None) -> dict[str, Any]:
    return {
        "rank": rank,
        "check": finding.check,
        "severity": finding.severity.label,
        "status": finding.status.value,
        "summary": finding.summary,
        "entity": {"kind": finding.entity.kind.value, "name": finding.entity.name},
        "confidence": _number(finding.confidence),
        "magnitude": _number(finding.magnitude),
        "score": _number(score(finding)),
        "tags": list(finding.tags),
        "evidence": [
            {
                "metric": e.metric,
                "labels": dict(e.labels),
                "value": _number(e.value),
                "threshold": _number(e.threshold),
                "unit": e.unit,
                "window_s": _number(e.window_s),
                "note": e.note,
            }
            for e in finding.evidence
        ],
        "fixes": [
            {"fix": f.fix_id, "summary": f.summary, "command": f.command, "params": f.params}
            for f in finding.fixes
        ],
        "started_at": finding.started_at,
        "peaked_at": finding.peaked_at,
        "history": [[t, _number(v)] for t, v in finding.history],
        "explained_by": [],
    }


def diagnosis_dict(diagnosis: Diagnosis) -> dict[str, Any]:
    code = diagnosis.exit_code()
    out: list[dict[str, Any]] = []
    by_id: dict[int, dict[str, Any]] = {}
    for label, depth, finding in ranked(diagnosis):
        item = finding_dict(finding, None if label == "-" else label)
        by_id[id(finding)] = item
        if depth == 0:
            out.append(item)
    for _, _, finding in ranked(diagnosis):
        for child in finding.explained_by:
            by_id[id(finding)]["explained_by"].append(by_id[id(child)])
    return {
        "schema": SCHEMA,
        "host": diagnosis.host,
        "source": diagnosis.source,
        "interval_s": _number(diagnosis.interval_s),
        "at": diagnosis.at,
        "status": exit_meaning(code),
        "exit_code": code,
        "problems": list(diagnosis.problems),
        "findings": out,
    }


def render_json(diagnosis: Diagnosis) -> str:
    return json.dumps(diagnosis_dict(diagnosis), indent=2, sort_keys=False) + "\n"
