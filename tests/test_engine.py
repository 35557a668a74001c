"""Engine: loading checks, a raising check, correlation over the causal graph, ranking."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from netdoctor import causes
from netdoctor.check import CheckSpec
from netdoctor.engine import CheckSet, correlate, diagnose, load_checks, run_check, score
from netdoctor.errors import UsageError
from netdoctor.model import Entity, EntityKind, Evidence, Finding, Severity, Status
from tests.viewbuilder import make_view


def problem(check: str, severity: Severity, tag: str, entity: Entity | None = None, magnitude: float = 1.0):
    return Finding(
        check=check,
        severity=severity,
        summary=f"{check} problem",
        entity=entity or Entity.host(),
        tags=[tag],
        magnitude=magnitude,
    )


def test_symptom_nests_under_its_cause_and_cause_ranks_first() -> None:
    retrans = problem("retransmits", Severity.CRITICAL, causes.TCP_RETRANSMITS, magnitude=8)
    drops = problem("conntrack", Severity.CRITICAL, causes.CONNTRACK_DROPS)
    full = problem("conntrack", Severity.WARNING, causes.CONNTRACK_FULL)
    unrelated = problem(
        "listen_queue", Severity.WARNING, causes.LISTEN_OVERFLOW, Entity(EntityKind.LISTENER, ":80")
    )
    roots = correlate([retrans, drops, full, unrelated])
    assert roots[0] is full
    # retransmits is closest to "drops" (1 edge) rather than "full" (1 edge too): the tie goes to the higher score.
    assert drops in full.explained_by
    assert retrans in drops.explained_by or retrans in full.explained_by
    assert unrelated in roots


def test_listen_overflow_does_not_explain_retransmits_on_another_entity_kind_unless_host() -> None:
    retrans = problem("retransmits", Severity.WARNING, causes.TCP_RETRANSMITS)
    overflow = problem(
        "listen_queue", Severity.WARNING, causes.LISTEN_OVERFLOW, Entity(EntityKind.LISTENER, ":80")
    )
    roots = correlate([retrans, overflow])
    # The retransmit finding is about the host: a listener overflow can explain it.
    assert roots == [overflow] and overflow.explained_by == [retrans]


def test_interface_cause_does_not_explain_other_interface() -> None:
    eth0 = problem(
        "nic_saturation", Severity.WARNING, causes.NIC_LINE_RATE, Entity(EntityKind.INTERFACE, "eth0")
    )
    eth1 = problem("nic_errors", Severity.WARNING, causes.NIC_DROPS, Entity(EntityKind.INTERFACE, "eth1"))
    roots = correlate([eth0, eth1])
    assert set(map(id, roots)) == {id(eth0), id(eth1)}
    assert eth0.explained_by == [] and eth1.explained_by == []


def test_ranking_is_deterministic_and_by_score() -> None:
    findings = [
        problem("b", Severity.WARNING, "x", magnitude=10),
        problem("a", Severity.WARNING, "x", magnitude=10),
        problem("c", Severity.CRITICAL, "x"),
        Finding.healthy("d", "fine"),
    ]
    roots = correlate(findings)
    assert [f.check for f in roots] == ["c", "a", "b", "d"]
    assert score(findings[2]) == 100.0
    assert score(findings[0]) == pytest.approx(20.0)


def test_raising_check_becomes_error_finding_and_others_still_run() -> None:
    def boom(view, thresholds):
        raise ZeroDivisionError("division by zero")

    def fine(view, thresholds):
        return [Finding.healthy("fine", "ok")]

    checks = CheckSet([CheckSpec("boom", "Boom", boom), CheckSpec("fine", "Fine", fine)])
    diagnosis = diagnose(make_view({}, {}), checks)
    by_check = {f.check: f for f in diagnosis.findings}
    assert by_check["boom"].status is Status.ERROR
    assert "ZeroDivisionError" in by_check["boom"].summary
    assert by_check["fine"].status is Status.HEALTHY
    assert diagnosis.exit_code() == 3


def test_check_returning_garbage_is_an_error_not_a_crash() -> None:
    spec = CheckSpec("bad", "Bad", lambda view, thresholds: "oops")
    [finding] = run_check(spec, make_view({}, {}))
    assert finding.status is Status.ERROR and "not a list of Finding" in finding.summary


def test_thresholds_overrides_reach_the_check() -> None:
    seen = {}

    def run(view, thresholds):
        seen.update(thresholds)
        return [Finding.healthy("t", "ok")]

    spec = CheckSpec("t", "T", run, thresholds={"a": 1, "b": 2})
    run_check(spec, make_view({}, {}), {"b": 5})
    assert seen == {"a": 1, "b": 5}


def test_exit_codes() -> None:
    from netdoctor.model import Diagnosis

    ok = Diagnosis([Finding.healthy("a", "ok")], source="t")
    assert ok.exit_code() == 0
    partly = Diagnosis([Finding.healthy("a", "ok"), Finding.cannot_judge("b", "no file")], source="t")
    assert partly.exit_code() == 0 and partly.not_judged() == ["b"]
    nothing = Diagnosis([Finding.cannot_judge("a", "no file"), Finding.cannot_judge("b", "no file")], source="t")
    assert nothing.exit_code() == 3
    warn = Diagnosis([problem("a", Severity.WARNING, "x"), Finding.cannot_judge("b", "no file")], source="t")
    assert warn.exit_code() == 1
    crit = Diagnosis([problem("a", Severity.WARNING, "x")], source="t")
    crit.findings[0].explained_by.append(problem("c", Severity.CRITICAL, "y"))
    assert crit.exit_code() == 2
    assert Diagnosis([], source="t").exit_code() == 3


def test_builtin_checks_load_and_unknown_id_is_a_usage_error() -> None:
    loaded = load_checks(use_entry_points=False)
    assert {s.id for s in loaded.specs} >= {"conntrack", "retransmits"}
    with pytest.raises(UsageError, match="unknown check"):
        load_checks(only=["nope"], use_entry_points=False)


DROPIN = """
from netdoctor.model import Finding, Severity
ID = "{id}"
TITLE = "A drop-in check"
NEEDS = ["node_nf_conntrack_entries"]
THRESHOLDS = {{"limit": 3}}
def run(view, thresholds):
    return [Finding(check=ID, severity=Severity.WARNING, summary="limit is %s" % thresholds["limit"])]
"""


def test_checks_dir_adds_drop_in_checks_and_reports_broken_ones(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(DROPIN.format(id="dropin_mine"))
    (tmp_path / "broken.py").write_text("raise RuntimeError('nope')\n")
    (tmp_path / "_private.py").write_text("raise RuntimeError('must not load')\n")
    loaded = load_checks([tmp_path], use_entry_points=False)
    assert "dropin_mine" in {s.id for s in loaded.specs}
    assert any("broken.py" in e and "nope" in e for e in loaded.load_errors)
    assert not any("_private" in e for e in loaded.load_errors)
    diagnosis = diagnose(make_view({}, {}), CheckSet([s for s in loaded.specs if s.id == "dropin_mine"]))
    assert diagnosis.findings[0].summary == "limit is 3"


def test_entry_point_plugin_installed_out_of_tree(tmp_path: Path) -> None:
    """A real out-of-tree plugin package, pip-installed, is found through the entry-point group."""
    package = tmp_path / "plugin"
    (package / "nd_plugin_demo").mkdir(parents=True)
    (package / "nd_plugin_demo" / "__init__.py").write_text(DROPIN.format(id="plugin_demo"))
    (package / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "nd-plugin-demo"
            version = "0.0.1"
            [project.entry-points."netdoctor.checks"]
            plugin_demo = "nd_plugin_demo"
            """
        )
    )
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(package),
        ],
        check=True,
    )
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from netdoctor.engine import load_checks\n"
        "specs = {s.id: s for s in load_checks().specs}\n"
        "print(specs['plugin_demo'].origin, specs['plugin_demo'].thresholds)\n" % str(target)
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "entry point nd_plugin_demo" in done.stdout and "'limit': 3" in done.stdout


def test_evidence_labels_link_interface_cause_to_cpu_symptom() -> None:
    pinned = problem(
        "softirq_drops", Severity.WARNING, causes.IRQ_PINNED, Entity(EntityKind.INTERFACE, "eth0")
    )
    pinned.evidence.append(Evidence("node_softnet_dropped_total", 5, labels={"cpu": "0"}))
    cpu0 = problem("softirq_drops", Severity.CRITICAL, causes.SOFTNET_DROPS, Entity(EntityKind.CPU, "0"))
    cpu1 = problem("softirq_drops", Severity.CRITICAL, causes.SOFTNET_DROPS, Entity(EntityKind.CPU, "1"))
    roots = correlate([pinned, cpu0, cpu1])
    assert pinned.explained_by == [cpu0]
    assert cpu1 in roots


def test_diagnosis_records_when_the_view_was_taken() -> None:
    view = make_view({}, {})
    view.meta = {"taken_at": [1000.0, 1005.0], "hostname": "web-7"}
    diagnosis = diagnose(view, CheckSet([CheckSpec("fine", "Fine", lambda v, t: [Finding.healthy("fine", "ok")])]))
    assert diagnosis.at == 1005.0 and diagnosis.host == "web-7"


@pytest.mark.parametrize(
    "cause_tag, symptom_tag",
    [(cause, symptom) for cause, symptoms in causes.CAUSAL_EDGES.items() for symptom in symptoms],
)
def test_every_edge_of_the_causal_graph_nests_its_symptom(cause_tag: str, symptom_tag: str) -> None:
    """Each documented mechanism, alone with an unrelated finding: the cause is the root, the symptom under it."""
    cause = problem("cause_check", Severity.WARNING, cause_tag)
    symptom = problem("symptom_check", Severity.CRITICAL, symptom_tag, magnitude=50)
    bystander = problem("other", Severity.WARNING, "unrelated_condition")
    roots = correlate([symptom, bystander, cause])
    assert roots[0] is cause, "a cause ranks first even when its symptom alone scores higher"
    assert cause.explained_by == [symptom]
    assert bystander in roots and bystander.explained_by == []


def test_a_symptom_is_never_its_own_cause_and_no_edge_runs_backwards() -> None:
    for cause_tag, symptoms in causes.CAUSAL_EDGES.items():
        for symptom_tag in symptoms:
            symptom = problem("s", Severity.WARNING, symptom_tag)
            cause = problem("c", Severity.WARNING, cause_tag)
            correlate([symptom, cause])
            assert symptom.explained_by == [] or cause_tag in causes.CAUSAL_EDGES.get(symptom_tag, ())
