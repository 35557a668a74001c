"""Ask the running kernel for a NIC's channels and rings (live source only)."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from netdoctor.errors import ParseError
from netdoctor.sources.parsers.ethtool import parse_channels, parse_rings

TIMEOUT_S = 2.0


def _ethtool_binary() -> str | None:
    return shutil.which("ethtool") or shutil.which("ethtool", path="/usr/sbin:/sbin")


def query_ethtool(iface: str) -> tuple[dict[str, Any] | None, str | None]:
    """({"channels": {...} | None, "rings": {...} | None}, why something is missing | None)."""
    binary = _ethtool_binary()
    if binary is None:
        return None, "ethtool is not installed: NIC channels and rings unknown"
    answer: dict[str, Any] = {"channels": None, "rings": None}
    problems = []
    for flag, key, parse in (("-l", "channels", parse_channels), ("-g", "rings", parse_rings)):
        try:
            done = subprocess.run(
                [binary, flag, iface], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"ethtool {flag} {iface}: {exc}")
            continue
        if done.returncode != 0:
            # Drivers without the op answer "Operation not supported": a fact, not a failure.
            reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
            problems.append(f"ethtool {flag} {iface}: {reason}")
            continue
        try:
            answer[key] = parse(done.stdout)
        except ParseError as exc:
            problems.append(f"ethtool {flag} {iface}: {exc}")
    return answer, "; ".join(problems) or None
