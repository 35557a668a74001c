"""Start real binaries for the deploy tests; read the shipped rules the way Prometheus loads them.

No YAML library: the shipped files are read by the real tools (Prometheus's rules API,
amtool), and generated config is written as JSON, which every YAML parser accepts.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import REPO, require_binary, stop_process, wait_until_serving
from tests.prom import free_port

RULES = REPO / "deploy" / "prometheus" / "netdoctor-rules.yml"


@contextmanager
def running(argv: list[str], log: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start a real binary, wait for `ready_url` to answer 200, always stop it."""
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until_serving(proc, ready_url, 60, log.read_text)
            yield proc
        finally:
            stop_process(proc, 15)


def prometheus_argv(work: Path, port: int, config: dict[str, Any], *extra: str) -> list[str]:
    (work / "prometheus.yml").write_text(json.dumps(config))
    return [
        require_binary("prometheus"),
        f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        *extra,
    ]


def loaded_rules(work: Path, rules: Path = RULES) -> list[dict[str, Any]]:
    """The rule groups as the real Prometheus loaded them (GET /api/v1/rules)."""
    port = free_port()
    argv = prometheus_argv(work, port, {"rule_files": [str(rules)], "scrape_configs": []})
    url = f"http://127.0.0.1:{port}"
    with running(argv, work / "prometheus.log", f"{url}/-/ready"):
        with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=10) as response:
            return json.loads(response.read())["data"]["groups"]
