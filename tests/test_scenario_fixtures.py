"""Each check fires on its scenario capture, stays quiet on the healthy one, and causes nest right.

The captures in tests/fixtures/proc/<scenario>/ are made by tests/fixtures/make_scenarios.py:
real incidents captured inside network namespaces, and (for what a machine cannot make
on demand) edited copies of the healthy capture whose README.md lists every change. A
real capture's `scenario.json` holds the facts of the run that made it (addresses, pids),
so the entity each finding must name is known exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from netdoctor.checks import BUILTIN

from netdoctor.engine import diagnose, load_checks
from netdoctor.model import Diagnosis, EntityKind, Finding, Severity, Status
from netdoctor.sources.capture import CaptureSource
from tests.conftest import REPO, SCENARIOS


@cache
def diagnosis_of(scenario: str) -> Diagnosis:
    """The Python API path: CaptureSource -> View -> built-in checks -> ranked diagnosis."""
    view = CaptureSource(SCENARIOS / scenario).view()
    return diagnose(view, load_checks(use_entry_points=False))


def facts(scenario: str) -> dict[str, Any]:
    return json.loads((SCENARIOS / scenario / "scenario.json").read_text())


def ranked(diagnosis: Diagnosis) -> Iterator[tuple[str, Finding]]:
    """(rank label, finding) for every problem, the way the renderers number them: 1, 1.1, 2..."""

    def walk(finding: Finding, label: str) -> Iterator[tuple[str, Finding]]:
        yield label, finding
        for index, child in enumerate(finding.explained_by, start=1):
            yield from walk(child, f"{label}.{index}")

    roots = [f for f in diagnosis.findings if f.status is Status.PROBLEM]
    for index, root in enumerate(roots, start=1):
        yield from walk(root, str(index))


def outline(diagnosis: Diagnosis) -> str:
    return "\n".join(
        f"{label} {f.check} {f.severity.label} {f.entity} {f.tags} {f.summary}" for label, f in ranked(diagnosis)
    )


def find(diagnosis: Diagnosis, matches: Callable[[Finding], bool]) -> tuple[str, Finding]:
    for label, finding in ranked(diagnosis):
        if matches(finding):
            return label, finding
    raise AssertionError(f"no matching finding in:\n{outline(diagnosis)}")


def descendants(finding: Finding) -> Iterator[Finding]:
    for child in finding.explained_by:
        yield child
        yield from descendants(child)


@dataclass(frozen=True)
class Expected:
    """The finding a scenario must produce: its check, what it is about, and how bad at least."""

    check: str
    entity: Callable[[str], tuple[EntityKind, str]]  # scenario -> (kind, exact name)
    severity: Severity
    tag: str


EXPECTED: dict[str, Expected] = {
    "retransmit_storm": Expected(
        "retransmits", lambda s: (EntityKind.HOST, "host"), Severity.CRITICAL, "tcp_retransmits"
    ),
    "ephemeral_ports": Expected(
        "ephemeral_ports",
        lambda s: (EntityKind.DESTINATION, facts(s)["busy_destination"]),
        Severity.CRITICAL,
        "ports_exhausted",
    ),
    "timewait_closewait": Expected(
        "socket_states",
        lambda s: (EntityKind.PROCESS, f"{facts(s)['leaky_name']} (pid {facts(s)['leaky_pid']})"),
        Severity.WARNING,
        "closewait_buildup",
    ),
    "listen_overflow": Expected(
        "listen_queue",
        lambda s: (EntityKind.LISTENER, facts(s)["listener"]),
        Severity.CRITICAL,
        "listen_overflow",
    ),
    "socket_buffers": Expected(
        "socket_buffers", lambda s: (EntityKind.HOST, "host"), Severity.CRITICAL, "socket_buffer_overflow"
    ),
    "softirq_saturation": Expected(
        "softirq_drops", lambda s: (EntityKind.INTERFACE, "eth0"), Severity.CRITICAL, "irq_pinned"
    ),
    "nic_errors": Expected("nic_errors", lambda s: (EntityKind.INTERFACE, "eth0"), Severity.WARNING, "nic_errors"),
    "nic_saturation": Expected(
        "nic_saturation", lambda s: (EntityKind.INTERFACE, "eth0"), Severity.WARNING, "nic_line_rate"
    ),
    "conntrack_full": Expected("conntrack", lambda s: (EntityKind.HOST, "host"), Severity.CRITICAL, "conntrack_full"),
}
# Scenarios whose expected finding may rank below another finding of the same incident
# (nic_errors: the ring overflow, also on eth0, outranks the CRC/frame errors).
RANK_ONE_IS_SAME_CHECK = {"nic_errors"}


def test_every_scenario_fixture_exists_and_is_documented() -> None:
    present = {p.name for p in SCENARIOS.iterdir() if (p / "meta.json").exists()}
    assert present == {"healthy", *EXPECTED}
    for name in present:
        readme = (SCENARIOS / name / "README.md").read_text()
        assert readme.startswith(f"# {name} ("), name
        if "(edited capture)" in readme:
            assert readme.count("\n- ") >= 3, f"{name}: the README must list what was changed"


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_scenario_fires_its_check_on_the_right_entity(scenario: str) -> None:
    expected = EXPECTED[scenario]
    result = diagnosis_of(scenario)
    kind, name = expected.entity(scenario)
    label, finding = find(
        result,
        lambda f: f.check == expected.check and expected.tag in f.tags and f.entity.kind is kind,
    )
    assert finding.entity.name == name, outline(result)
    assert finding.severity >= expected.severity, outline(result)
    assert finding.evidence, f"{scenario}: a finding without evidence"
    if scenario in RANK_ONE_IS_SAME_CHECK:
        first = next(ranked(result))[1]
        assert first.check == expected.check and first.entity == finding.entity, outline(result)
    else:
        assert label == "1" or label.startswith("1."), f"{scenario}: ranked {label}\n{outline(result)}"
    assert result.exit_code() == (2 if any(f.severity is Severity.CRITICAL for _, f in ranked(result)) else 1)


def test_ephemeral_ports_fixture_does_not_name_the_fine_destination() -> None:
    fine = facts("ephemeral_ports")["fine_destination"]
    for _, finding in ranked(diagnosis_of("ephemeral_ports")):
        assert fine not in finding.entity.name and fine not in finding.summary


def test_timewait_closewait_fixture_also_reports_the_timewait_build_up() -> None:
    known = facts("timewait_closewait")
    _, finding = find(diagnosis_of("timewait_closewait"), lambda f: "timewait_buildup" in f.tags)
    assert finding.check == "socket_states"
    assert f"{known['timewait']} of {known['max_tw_buckets']}" in finding.summary


def test_listen_overflow_fixture_names_the_process() -> None:
    known = facts("listen_overflow")
    _, finding = find(diagnosis_of("listen_overflow"), lambda f: f.check == "listen_queue")
    assert f"{known['name']} (pid {known['pid']})" in finding.summary


def test_socket_buffers_fixture_names_the_overflowing_socket() -> None:
    socket_name = facts("socket_buffers")["socket"]
    _, finding = find(diagnosis_of("socket_buffers"), lambda f: f.entity.kind is EntityKind.SOCKET)
    assert finding.check == "socket_buffers" and finding.entity.name == socket_name


def test_nic_saturation_fixture_measures_bytes_against_bytes() -> None:
    _, finding = find(diagnosis_of("nic_saturation"), lambda f: f.check == "nic_saturation")
    # 95% of 125,000,000 bytes/s: a bits-vs-bytes mix-up would read 760% (or 11.9%).
    assert "95.0%" in finding.summary
    assert finding.severity is Severity.WARNING  # above 90%, below the 98% critical line


def test_healthy_fixture_has_no_problem() -> None:
    result = diagnosis_of("healthy")
    assert [f for f in result.all_findings() if f.severity >= Severity.WARNING] == []
    statuses = {f.check: f.status for f in result.all_findings()}
    assert set(statuses) == set(BUILTIN)
    # A namespace has no physical NIC: nothing to hold a byte rate against, so no judgement —
    # never "healthy" without data. Every other check had its inputs and found nothing.
    assert statuses.pop("nic_saturation") is Status.CANNOT_JUDGE
    assert statuses == dict.fromkeys(statuses, Status.HEALTHY)


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_each_scenario_leaves_unrelated_checks_quiet(scenario: str) -> None:
    """Only the incident's own chain fires: no check outside it reports a problem."""
    chain = {
        "conntrack_full": {"conntrack", "retransmits"},
        "softirq_saturation": {"softirq_drops"},
    }.get(scenario, {EXPECTED[scenario].check})
    others = [f for _, f in ranked(diagnosis_of(scenario)) if f.check not in chain]
    assert others == [], outline(diagnosis_of(scenario))


# --- causal chains ----------------------------------------------------------------------------


def test_softirq_chain_irq_pinning_is_root_with_softnet_drops_nested() -> None:
    result = diagnosis_of("softirq_saturation")
    root = result.findings[0]
    assert root.status is Status.PROBLEM and "irq_pinned" in root.tags, outline(result)
    assert root.entity.kind is EntityKind.INTERFACE and root.entity.name == "eth0"
    assert any(fix.fix_id == "irq-affinity" for fix in root.fixes), root.fixes
    nested = list(descendants(root))
    drops = [f for f in nested if "softnet_drops" in f.tags]
    assert drops and all(f.entity.kind is EntityKind.CPU and f.entity.name == "0" for f in drops), outline(result)
    assert any("softirq_saturated" in f.tags for f in nested), outline(result)


def test_conntrack_chain_drops_nested_under_the_full_table() -> None:
    result = diagnosis_of("conntrack_full")
    root = result.findings[0]
    assert "conntrack_full" in root.tags, outline(result)
    drops = [f for f in root.explained_by if "conntrack_drops" in f.tags]
    assert len(drops) == 1, outline(result)
    # The refused flows' retransmits sit under the drops that caused them.
    assert any("tcp_retransmits" in f.tags for f in drops[0].explained_by), outline(result)


def test_nic_errors_chain_ring_overflow_explains_the_drops() -> None:
    result = diagnosis_of("nic_errors")
    _, ring = find(result, lambda f: "ring_overflow" in f.tags)
    assert ring.entity.name == "eth0"
    assert any("nic_drops" in f.tags and f.entity.name == "eth0" for f in ring.explained_by), outline(result)


# --- the command line, once per fixture ------------------------------------------------------


def _cli(scenario: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "netdoctor",
            "diagnose",
            "--from",
            str(SCENARIOS / scenario),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_cli_replays_the_scenario(scenario: str) -> None:
    code, report = _cli(scenario)
    expected = EXPECTED[scenario]
    first = report["findings"][0]
    assert first["rank"] == "1" and first["check"] == expected.check, json.dumps(report["findings"][:2])[:2000]
    worst = diagnosis_of(scenario).worst
    assert code == {Severity.CRITICAL: 2, Severity.WARNING: 1}[worst]
    assert report["exit_code"] == code


def test_cli_healthy_is_not_a_warning() -> None:
    code, report = _cli("healthy")
    # OK: the checks that could judge found nothing. nic_saturation could not judge (a namespace has no
    # physical NIC) and says so in its own finding, never "healthy". Never WARNING or CRITICAL.
    assert code == 0, report
    assert all(f["rank"] is None for f in report["findings"])
    by_check = {f["check"]: f for f in report["findings"]}
    assert by_check["nic_saturation"]["status"] == "cannot_judge"
