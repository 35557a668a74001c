"""CLI behaviour a monitoring system and a tired human rely on."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from netdoctor.checks import BUILTIN

from tests.conftest import REPO


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netdoctor", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "args, message",
    [
        (["diagnose", "--bogus"], "No such option"),
        (["diagnose", "--interval", "0"], "must be positive"),
        (["diagnose", "--interval", "abc"], "not a valid float"),
        (["diagnose", "--checks", "nope", "--interval", "0.1"], "unknown check"),
        (["diagnose", "--exclude-iface", "(", "--interval", "0.1"], "not a regex"),
        (["diagnose", "--set", "broken", "--interval", "0.1"], "CHECK.THRESHOLD=VALUE"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_usage_errors_exit_3_with_one_clear_line(args: list[str], message: str) -> None:
    done = run(*args)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[thresholds\n")
    done = run("diagnose", "--config", str(config), "--interval", "0.1")
    assert done.returncode == 3 and "not valid TOML" in done.stderr
    done = run("diagnose", "--config", str(tmp_path / "absent.toml"), "--interval", "0.1")
    assert done.returncode == 3 and "cannot read config" in done.stderr


def test_diagnose_live_json_has_every_check_and_a_consistent_exit_code() -> None:
    done = run("diagnose", "--interval", "0.5", "--format", "json")
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert report["exit_code"] == done.returncode
    checks = {f["check"] for f in report["findings"]}
    assert checks >= {"conntrack", "retransmits", "softirq_drops", "listen_queue", "socket_states"}


def test_config_thresholds_and_set_flags_reach_checks(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[diagnose]\ninterval = 0.3\n[thresholds.conntrack]\nwarn_fill_ratio = 0.5\n")
    done = run(
        "diagnose",
        "--config",
        str(config),
        "--checks",
        "conntrack",
        "--format",
        "json",
        "--set",
        "conntrack.crit_fill_ratio=0.6",
    )
    report = json.loads(done.stdout)
    assert report["interval_s"] < 2
    assert [f["check"] for f in report["findings"]] == ["conntrack"]


def test_checks_lists_inputs_and_thresholds() -> None:
    done = run("checks")
    assert done.returncode == 0
    for check_id in BUILTIN:
        assert check_id in done.stdout
    assert "needs:" in done.stdout and "=" in done.stdout


def test_wheel_installs_checks_as_netdoctor_checks_not_top_level(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("netdoctor-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "netdoctor/checks/conntrack.py" in names
    assert not any(name.startswith("checks/") for name in names)


def test_installed_package_captures_and_replays(tmp_path: Path) -> None:
    """`pip install .` (into a fresh venv that borrows the dependencies) gives a working capture."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(REPO)],
        check=True,
        capture_output=True,
    )
    out = tmp_path / "c.tar.gz"
    # Run from tmp_path so the source checkout is not on sys.path: this exercises the installed copy.
    done = subprocess.run(
        [str(venv / "bin" / "netdoctor"), "capture", "-o", str(out), "--interval", "0.3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    where = subprocess.run(
        [str(python), "-c", "import netdoctor.checks.conntrack as c; print(c.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert str(venv) in where
    diag = subprocess.run(
        [str(venv / "bin" / "netdoctor"), "diagnose", "--from", str(out), "--format", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert json.loads(diag.stdout)["source"].startswith("capture")
