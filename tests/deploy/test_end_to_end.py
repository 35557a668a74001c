"""The whole stack, real binaries on loopback: Prometheus -> Alertmanager -> netdoctor serve.

Prometheus serves a backfilled incident (conntrack table filling to 99% on
`incident:9100`, with drops and retransmits) and evaluates the shipped rules; the shipped
Alertmanager route posts to `netdoctor serve` (bearer token); serve diagnoses the alert's
instance from the same Prometheus at the alert's start. The report that appears must be
for that instance, with conntrack as its top finding.

The one liberty taken with the shipped files: every alert's `for:` is set to 0s and the
evaluation interval to 1 s, so the alert fires in seconds instead of minutes (the `for:`
logic itself is covered by `promtool test rules`).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from netdoctor.serve.app import ServeApp
from netdoctor.serve.worker import ServeSettings
from tests.conftest import REPO, require_binary
from tests.deploy.stack import prometheus_argv, running
from tests.prom import backfill, free_port
from tests.serve.stack import HEALTHY, INCIDENT, http, incident_history, wait_for

TOKEN = "end-to-end-token-0123456789"


def shipped_rules_firing_fast(target: Path) -> None:
    text = (REPO / "deploy" / "prometheus" / "netdoctor-rules.yml").read_text()
    fast, count = re.subn(r"(?m)^(\s+)for: \w+$", r"\1for: 0s", text)
    assert count == 16
    target.write_text(fast)


def shipped_alertmanager_config(target: Path, serve_url: str, token_file: Path) -> None:
    text = (REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text()
    text = text.replace("http://127.0.0.1:9095/alert", f"{serve_url}/alert")
    text = text.replace("/etc/netdoctor/serve.token", str(token_file))
    text, count = re.subn(r"group_wait: \w+", "group_wait: 1s", text)
    assert count == 2
    target.write_text(text)


def test_alert_to_report_with_the_real_prometheus_alertmanager_and_serve() -> None:
    alertmanager = require_binary("prometheus-alertmanager", "alertmanager")
    with tempfile.TemporaryDirectory(prefix="netdoctor-e2e-") as tmp:
        work = Path(tmp)
        tsdb = work / "data"
        backfill(incident_history(), tsdb)
        token_file = work / "token"
        token_file.write_text(TOKEN)
        prom_port, am_port = free_port(), free_port()
        prom_url, am_url = f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}"

        app = ServeApp(
            ServeSettings(prometheus_url=prom_url, reports_dir=work / "reports", port=0, token=TOKEN)
        ).start()
        try:
            shipped_alertmanager_config(work / "alertmanager.yml", app.url, token_file)
            shipped_rules_firing_fast(work / "rules.yml")
            prom_argv = prometheus_argv(
                work,
                prom_port,
                {
                    "global": {"scrape_interval": "15s", "evaluation_interval": "1s"},
                    "rule_files": [str(work / "rules.yml")],
                    "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
                    "scrape_configs": [],
                },
                # Alerts evaluated before the Alertmanager is discovered are resent only after this
                # delay (default 1m): keep the test in seconds.
                "--rules.alert.resend-delay=2s",
            )
            am_argv = [
                alertmanager,
                f"--config.file={work / 'alertmanager.yml'}",
                f"--storage.path={work / 'am'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",  # no gossip port on 0.0.0.0
            ]
            with (
                running(am_argv, work / "am.log", f"{am_url}/-/ready"),
                running(prom_argv, work / "prom.log", f"{prom_url}/-/ready"),
            ):

                def incident_reports() -> list[dict]:
                    status, _, body = http("GET", f"{app.url}/reports?format=json", token=TOKEN)
                    listed = json.loads(body)["reports"]
                    return [r for r in listed if r["state"] != "pending"] if listed and app.queue.busy == 0 else []

                listed = wait_for(incident_reports, 120, 0.5)
        finally:
            app.stop()
        assert {r["instance"] for r in listed} == {INCIDENT}, listed
        assert HEALTHY not in {r["instance"] for r in listed}
        names = {r["alert"] for r in listed}
        assert names & {
            "NetdoctorConntrackTableNearlyFull",
            "NetdoctorConntrackTableFilling",
            "NetdoctorConntrackDropping",
        }
        for entry in listed:
            assert entry["state"] == "done", entry
            assert entry["top_finding"]["check"] == "conntrack", entry
        record = json.loads((work / "reports" / f"{listed[0]['id']}.json").read_text())
        assert record["alert"]["labels"]["netdoctor_check"] in ("conntrack", "retransmits")
        assert record["alert"]["annotations"]["runbook_url"].startswith("https://")
        assert f":{prom_port}/graph?" in record["alert"]["generator_url"]
