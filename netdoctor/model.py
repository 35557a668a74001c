"""The typed vocabulary shared by checks, the engine, renderers and fixes.

Findings are data, not strings, so the engine can correlate and rank them and the
renderers (table, JSON, Markdown) all show the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any


class Severity(IntEnum):
    """How bad a finding is. The integer orders severities for ranking.

    UNKNOWN sits between OK and WARNING: a check that could not judge is worth
    more attention than a healthy one, but less than a real problem.
    """

    OK = 0
    UNKNOWN = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class Status(str, Enum):
    """What a finding says about its check's run."""

    PROBLEM = "problem"  # the check found something wrong
    HEALTHY = "healthy"  # the check had its inputs and found nothing wrong
    CANNOT_JUDGE = "cannot_judge"  # inputs missing: never read as healthy
    ERROR = "error"  # the check itself raised


class EntityKind(str, Enum):
    HOST = "host"
    INTERFACE = "interface"
    CPU = "cpu"
    DESTINATION = "destination"
    LISTENER = "listener"
    PROCESS = "process"
    SOCKET = "socket"


@dataclass(frozen=True)
class Entity:
    """What a finding is about: the host, an interface, a CPU, a destination ip:port..."""

    kind: EntityKind
    name: str

    def __str__(self) -> str:
        return self.name if self.kind is EntityKind.HOST else f"{self.kind.value} {self.name}"

    @classmethod
    def host(cls, name: str = "host") -> Entity:
        return cls(EntityKind.HOST, name)


@dataclass
class Evidence:
    """One measured fact behind a finding: the metric, its value and what it was held against."""

    metric: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)
    threshold: float | None = None
    unit: str = ""
    window_s: float | None = None
    note: str = ""

    def describe(self) -> str:
        name = self.note or self.metric
        if self.labels and not self.note:
            name += "{" + ",".join(f"{k}={v}" for k, v in sorted(self.labels.items())) + "}"
        text = f"{name}={_fmt(self.value)}{self.unit}"
        if self.threshold is not None:
            text += f" (threshold {_fmt(self.threshold)}{self.unit})"
        return text


@dataclass
class FixSuggestion:
    """A remediation the finding proposes; `fix_id` names a `netdoctor fix` option."""

    fix_id: str
    summary: str
    command: str = ""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finding:
    """One judgement of one check about one entity.

    `tags` place the finding in the causal graph (see engine.CAUSAL_EDGES);
    `magnitude` is how far past its threshold the worst evidence is (1.0 = at it),
    used for ranking.
    """

    check: str
    severity: Severity
    summary: str
    entity: Entity = field(default_factory=Entity.host)
    status: Status = Status.PROBLEM
    confidence: float = 1.0
    magnitude: float = 1.0
    evidence: list[Evidence] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    fixes: list[FixSuggestion] = field(default_factory=list)
    explained_by: list[Finding] = field(default_factory=list)
    started_at: float | None = None
    peaked_at: float | None = None
    # (unix time, value) of the finding's key series over the lookback, where the source has history.
    history: list[tuple[float, float]] = field(default_factory=list)

    @classmethod
    def cannot_judge(cls, check: str, why: str, entity: Entity | None = None) -> Finding:
        return cls(
            check=check,
            severity=Severity.UNKNOWN,
            summary=f"could not judge: {why}",
            entity=entity or Entity.host(),
            status=Status.CANNOT_JUDGE,
            confidence=0.0,
        )

    @classmethod
    def healthy(cls, check: str, summary: str, evidence: list[Evidence] | None = None) -> Finding:
        return cls(
            check=check,
            severity=Severity.OK,
            summary=summary,
            status=Status.HEALTHY,
            evidence=evidence or [],
        )


@dataclass
class Diagnosis:
    """The ranked result: root causes first, each with the symptoms it explains nested."""

    findings: list[Finding]
    source: str
    interval_s: float | None = None
    problems: list[str] = field(default_factory=list)
    host: str = ""
    at: float | None = None

    @property
    def worst(self) -> Severity:
        return max((f.severity for f in self.all_findings()), default=Severity.UNKNOWN)

    def all_findings(self) -> list[Finding]:
        out: list[Finding] = []
        stack = list(self.findings)
        while stack:
            finding = stack.pop(0)
            out.append(finding)
            stack[0:0] = finding.explained_by
        return out

    def exit_code(self) -> int:
        """Monitoring-plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

        A real problem wins. Without one, the answer is UNKNOWN when netdoctor could not
        run (no check ran, or a check crashed) or could not judge anything at all; when
        some checks judged and found nothing while others lacked their data (a VM's NIC
        with no link speed, say), it is OK — and those checks still say "could not judge"
        in the report, never "healthy".
        """
        findings = self.all_findings()
        if any(f.severity is Severity.CRITICAL for f in findings):
            return 2
        if any(f.severity is Severity.WARNING for f in findings):
            return 1
        if not findings or any(f.status is Status.ERROR for f in findings):
            return 3
        if not any(f.status is Status.HEALTHY for f in findings):
            return 3
        return 0

    def not_judged(self) -> list[str]:
        """Checks that could not judge (or crashed), for the status line."""
        return sorted({f.check for f in self.all_findings() if f.status in (Status.CANNOT_JUDGE, Status.ERROR)})


@dataclass
class PlannedWrite:
    """One concrete change a fix makes: a path under the root, its old and new content."""

    path: str
    before: str | None
    after: str
    kind: str = "file"  # "sysctl", "file", "ethtool", ...


@dataclass
class FixPlan:
    fix_id: str
    summary: str
    writes: list[PlannedWrite] = field(default_factory=list)
    preconditions: list[str] = field(default_factory=list)


def _fmt(value: float) -> str:
    """Short, readable numbers for people: 0.0123, 4.68, 640, 28.2k, 118.8M (JSON keeps the raw value)."""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 10_000:
        for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
            if magnitude >= limit:
                return f"{value / limit:.1f}{suffix}"
    if value == int(value):
        return str(int(value))
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.4g}"
