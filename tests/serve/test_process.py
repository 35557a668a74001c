"""The real `netdoctor serve` process: SIGTERM drains the queue; a restart finds earlier reports."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from netdoctor.serve.payload import parse_alert
from netdoctor.serve.reports import report_id
from tests.prom import free_port
from tests.serve.stack import am_alert, am_payload, http, wait_for

TOKEN = "process-token-0123456789"


def start(prometheus_url: str, reports: Path, token_file: Path, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "netdoctor", "serve",
            "--listen", f"127.0.0.1:{port}",
            "--prometheus", prometheus_url,
            "--reports-dir", str(reports),
            "--token-file", str(token_file),
            "--workers", "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            return http("GET", f"{url}/healthz", timeout=1)[0] == 200
        except OSError:
            return False

    wait_for(up, 30)
    return proc


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out


def test_sigterm_drains_the_queue_and_a_restart_finds_the_reports(prometheus_url: str, tmp_path: Path) -> None:
    reports, token_file = tmp_path / "reports", tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    proc = start(prometheus_url, reports, token_file, port)
    try:
        alerts = [am_alert(fingerprint=f"{i + 1:x}", starts_at=time.time() - 300) for i in range(40)]
        status, _, body = http("POST", f"http://127.0.0.1:{port}/alert", am_payload(alerts), token=TOKEN)
        assert status == 200 and len(json.loads(body)["queued"]) == 40
    finally:
        code, log = stop(proc)  # at once: most of the 40 are still queued
    assert code == 0, log
    draining = re.search(r"draining (\d+) queued", log)
    assert draining and int(draining.group(1)) > 0, log  # the stop really had work left to drain
    written = sorted(p.stem for p in reports.glob("*.json"))
    assert len(written) == 40 and len(list(reports.glob("*.md"))) == 40
    assert all(json.loads((reports / f"{rid}.json").read_text())["state"] == "done" for rid in written)

    proc = start(prometheus_url, reports, token_file, port)
    try:
        status, _, body = http("GET", f"http://127.0.0.1:{port}/reports?format=json", token=TOKEN)
        assert sorted(e["id"] for e in json.loads(body)["reports"]) == written
        status, _, body = http("POST", f"http://127.0.0.1:{port}/alert", am_payload(alerts[:1]), token=TOKEN)
        first = report_id(parse_alert(alerts[0], 0))
        assert json.loads(body) == {"queued": [], "reused": [first], "resolved": []}
    finally:
        assert stop(proc)[0] == 0


def test_bad_flags_are_one_line_and_exit_3(tmp_path: Path) -> None:
    short = tmp_path / "token"
    short.write_text("short")
    done = subprocess.run(
        [sys.executable, "-m", "netdoctor", "serve", "--prometheus", "http://127.0.0.1:1",
         "--reports-dir", str(tmp_path), "--token-file", str(short)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 3
    assert done.stderr.strip() == f"netdoctor: --token-file {short}: the token must be at least 16 characters"
