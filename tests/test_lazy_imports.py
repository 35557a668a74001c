"""`netdoctor --help` must not pay for the heavy dependencies.

Why: the CLI module is imported by every invocation, `--help` included; pyroute2, psutil, the Prometheus
client (which pulls in requests) and tabulate together cost hundreds of milliseconds, so the commands import
them inside themselves. This test pins that behaviour (which modules get imported), not a timing: the timing
is bench/help_bench.py's job.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pyroute2", "psutil", "prometheus_api_client", "tabulate", "requests")

# A fresh interpreter: this pytest process has imported who knows what already.
PROBE = (
    "import json, sys\n"
    "import netdoctor.cli\n"
    f"heavy = {set(HEAVY)!r}\n"
    "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
)

HELP_PROBE = (
    "import json, sys\n"
    "from netdoctor.cli import main\n"
    "sys.argv = ['netdoctor', '--help']\n"
    "try:\n"
    "    main()\n"
    "except SystemExit:\n"
    "    pass\n"
    f"heavy = {set(HEAVY)!r}\n"
    "sys.stderr.write(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )


def test_importing_the_cli_imports_no_heavy_dependency() -> None:
    imported = json.loads(_run(PROBE).stdout)
    assert imported == []


def test_running_help_imports_no_heavy_dependency() -> None:
    done = _run(HELP_PROBE)
    assert "Usage:" in done.stdout  # --help really ran and printed the usage
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


def test_the_probe_detects_a_heavy_import() -> None:
    """The probe itself works: a heavy module that *is* imported shows up in the list."""
    imported = json.loads(_run("import tabulate\n" + PROBE).stdout)
    assert imported == ["tabulate"]
