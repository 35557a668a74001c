"""Shared test helpers.

`require(condition, reason)` skips a test that needs something this machine lacks
(root, network namespaces, a binary) — except under NETDOCTOR_REQUIRE_REAL=1 (set
by .ci/run), where the same lack fails the test, so a green CI means the real
tests ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
SCENARIOS = FIXTURES / "proc"
REQUIRE_REAL = os.environ.get("NETDOCTOR_REQUIRE_REAL") == "1"


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if REQUIRE_REAL:
        pytest.fail(f"NETDOCTOR_REQUIRE_REAL=1 but {reason}")
    pytest.skip(reason)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root")


def require_binary(*names: str) -> str:
    """Path of the first of `names` found on PATH (or in /usr/sbin, /usr/bin)."""
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if found:
            return found
    require(False, f"none of {', '.join(names)} is installed")
    raise AssertionError("unreachable")


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL: every binary a test starts is stopped the same way."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until_serving(
    proc: subprocess.Popen, url: str, timeout_s: float, log: Callable[[], str] = lambda: ""
) -> None:
    """Poll `url` until it answers 200; if the binary exits first, fail with the end of its log."""
    deadline = time.monotonic() + timeout_s
    name = os.path.basename(str(proc.args[0] if isinstance(proc.args, list) else proc.args))
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {log()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer {url} within {timeout_s:g} s")
        time.sleep(0.1)


@pytest.fixture
def scenarios_dir() -> Path:
    return SCENARIOS
