"""The shipped monitoring stack, checked with the real tools.

promtool checks and unit-tests the rules (and a mutated copy with the seed's bits/bytes
mistake must fail those tests); every dashboard expression parses with promtool; amtool
checks the Alertmanager config; the node_exporter unit's flags start the real binary and
expose what the checks need; the serve unit's flags are flags `netdoctor serve` knows.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from netdoctor.engine import load_checks
from netdoctor.sources.prometheus import NETSTAT_DEFAULT_FIELDS
from tests.conftest import REPO, require_binary
from tests.deploy.stack import loaded_rules
from tests.prom import free_port

DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "netdoctor-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "netdoctor-rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "netdoctor-network.json"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
NODE_EXPORTER_UNIT = DEPLOY / "systemd" / "prometheus-node-exporter.service"
SERVE_UNIT = DEPLOY / "systemd" / "netdoctor-serve.service"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def groups(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The shipped rules as the real Prometheus loads them (GET /api/v1/rules)."""
    return loaded_rules(tmp_path_factory.mktemp("rules"))


def alert_rules(groups: list[dict]) -> list[dict]:
    return [rule for group in groups for rule in group["rules"] if rule["type"] == "alerting"]


def github_anchor(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def readme_anchors() -> set[str]:
    return {github_anchor(m) for m in re.findall(r"^#{1,6} (.+)$", (REPO / "README.md").read_text(), re.M)}


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 32 rules found" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_fires_in_a_unit_test_and_every_test_has_a_quiet_instance(groups: list[dict]) -> None:
    text = RULE_TESTS.read_text()
    fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels:", text))
    assert fired == {rule["name"] for rule in alert_rules(groups)}
    tests = text.split("\n- name: ")[1:]
    assert len(tests) == 4
    for test in tests:
        assert 'instance="good:9100"' in test, test[:80]


def test_the_seeds_bits_versus_bytes_mistake_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests can fail: put the seed's `* 8` back and the healthy 8% host 'saturates'."""
    rules = RULES.read_text()
    seed = rules.replace(
        "instance_device:node_network_receive_bytes:rate5m / on(instance, job, device)",
        "instance_device:node_network_receive_bytes:rate5m * 8 / on(instance, job, device)",
    )
    assert seed != rules
    (tmp_path / "netdoctor-rules.yml").write_text(seed)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    done = promtool("test", "rules", str(tmp_path / "tests" / RULE_TESTS.name))
    assert done.returncode != 0
    assert "NetdoctorInterfaceReceiveSaturated" in done.stdout + done.stderr


def test_alerts_name_a_check_a_severity_and_a_runbook_that_exists(groups: list[dict]) -> None:
    check_ids = {spec.id for spec in load_checks(use_entry_points=False).specs}
    anchors = readme_anchors()
    rules = alert_rules(groups)
    assert len(rules) == 16
    for rule in rules:
        labels, annotations = rule["labels"], rule["annotations"]
        assert labels["severity"] in ("warning", "critical"), rule["name"]
        assert labels["netdoctor_check"] in check_ids, rule["name"]
        assert rule["name"].startswith("Netdoctor")  # the Alertmanager route matches on it
        anchor = annotations["runbook_url"].rsplit("#", 1)[1]
        assert anchor in anchors, f"{rule['name']}: README has no heading for #{anchor}"
    for check_id in check_ids:
        assert f"runbook-{check_id}" in anchors, f"README has no runbook for {check_id}"


def test_the_seeds_wrong_forms_are_gone(groups: list[dict]) -> None:
    exprs = " ".join(rule["query"] for group in groups for rule in group["rules"])
    assert "* 8" not in exprs
    assert "node_sockstat_TCP_inuse" not in exprs
    assert not re.search(r"rate\(node_netstat_Tcp_RetransSegs\[5m\]\)\s*>", exprs)
    assert "node_netstat_Tcp_CurrEstab" in exprs and "node_network_speed_bytes > 0" in exprs


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if a.get("expr")]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":  # Grafana's label_values(METRIC, LABEL): the metric is PromQL
            found = re.fullmatch(r"label_values\((.+), *(\w+)\)", variable["definition"])
            assert found, variable["definition"]
            exprs.append(f"group by ({found.group(2)}) ({found.group(1)})")
    return exprs


def grafana_to_promql(expr: str) -> str:
    """Grafana's variables replaced by what Grafana would put there."""
    return expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$instance", ".+")


def test_dashboard_is_valid_json_and_every_expression_parses(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("bandwidth", "drops and errors", "retransmit", "sockets by state", "conntrack", "softirq", "softnet"):
        assert topic in titles
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "netdoctor-network"
    exprs = dashboard_exprs()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": grafana_to_promql(e)} for i, e in enumerate(exprs)
    ]}]}  # fmt: skip
    generated = tmp_path / "dashboard-exprs.yml"
    generated.write_text(json.dumps(rules))  # JSON is YAML
    done = promtool("check", "rules", str(generated))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


def test_a_broken_dashboard_expression_is_caught(tmp_path: Path) -> None:
    generated = tmp_path / "broken.yml"
    generated.write_text(json.dumps({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "rate(x[5m]"}]}]}))
    assert promtool("check", "rules", str(generated)).returncode != 0


def test_alertmanager_config_routes_netdoctor_alerts_to_serve() -> None:
    amtool = require_binary("amtool")
    done = subprocess.run([amtool, "check-config", str(ALERTMANAGER)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    text = ALERTMANAGER.read_text()
    assert re.search(r"- name: netdoctor\n\s+webhook_configs:\n\s+- url: http://127.0.0.1:9095/alert\n", text)
    assert "send_resolved: true" in text and "credentials_file: /etc/netdoctor/serve.token" in text
    routed = subprocess.run(
        [amtool, "config", "routes", "test", "--config.file", str(ALERTMANAGER),
         "alertname=NetdoctorConntrackTableNearlyFull", "instance=a:9100"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "netdoctor" in routed.stdout, routed.stdout + routed.stderr


def exec_start(unit: Path) -> list[str]:
    text = unit.read_text().replace("\\\n", " ")
    [line] = [line for line in text.splitlines() if line.startswith("ExecStart=") and line != "ExecStart="]
    return shlex.split(line[len("ExecStart=") :])


def test_node_exporter_unit_flags_start_the_real_binary_with_what_the_checks_need(tmp_path: Path) -> None:
    binary = require_binary("prometheus-node-exporter")
    argv = exec_start(NODE_EXPORTER_UNIT)
    assert argv[0] == "/usr/bin/prometheus-node-exporter"
    port = free_port()
    flags = [a for a in argv[1:] if not a.startswith("--web.listen-address")]
    log = (tmp_path / "node_exporter.log").open("w")
    proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}", *flags], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "node_exporter.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    metrics = response.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "node_exporter did not answer"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    names = {line.split("{")[0].split(" ")[0] for line in metrics.splitlines() if line and not line.startswith("#")}
    # Fields the default --collector.netstat.fields omits but the checks read:
    for wanted in (
        "node_netstat_TcpExt_TCPBacklogDrop",
        "node_netstat_TcpExt_PruneCalled",
        "node_netstat_TcpExt_TCPRcvQDrop",
        "node_netstat_TcpExt_TCPTimeWaitOverflow",
        "node_netstat_Tcp_CurrEstab",
        "node_netstat_TcpExt_ListenOverflows",
        "node_netstat_Udp_RcvbufErrors",
        "node_softnet_dropped_total",
        "node_softnet_times_squeezed_total",
        "node_network_receive_bytes_total",
        "node_interrupts_total",
        "node_sockstat_TCP_tw",
    ):
        assert wanted in names, wanted
    # Every field of the default regex is still exported by the unit's regex.
    fields_flag = next(a for a in flags if a.startswith("--collector.netstat.fields="))
    unit_regex = re.compile(fields_flag.split("=", 1)[1])
    for name in names:
        if name.startswith("node_netstat_"):
            field = name[len("node_netstat_") :]
            assert unit_regex.match(field), field
    default_kept = [n for n in names if n.startswith("node_netstat_") and NETSTAT_DEFAULT_FIELDS.match(n[13:])]
    assert default_kept


def test_serve_unit_runs_serve_with_flags_it_knows() -> None:
    from netdoctor.cli import serve

    argv = exec_start(SERVE_UNIT)
    assert argv[1] == "serve"
    known = {opt for param in serve.params for opt in param.opts}
    given = [a for a in argv[2:] if a.startswith("--")]
    assert given and set(given) <= known
    assert dict(zip(argv[2::2], argv[3::2], strict=False))["--listen"].startswith("127.0.0.1:")
    text = SERVE_UNIT.read_text()
    assert "KillSignal=SIGTERM" in text and re.search(r"TimeoutStopSec=\d+", text)


@pytest.mark.parametrize("unit", [NODE_EXPORTER_UNIT, SERVE_UNIT])
def test_systemd_units_have_the_sections_systemd_needs(unit: Path) -> None:
    text = unit.read_text()
    for section in ("[Unit]", "[Service]", "[Install]"):
        assert section in text
