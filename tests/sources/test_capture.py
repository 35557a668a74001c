"""Captures: live -> capture -> load gives an equal View; bad captures give clear errors."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from netdoctor.errors import SourceError
from netdoctor.sources.capture import CaptureSource, write_capture
from netdoctor.sources.collect import build_view
from netdoctor.sources.live import LiveSource
from netdoctor.sources.reader import Reader


@pytest.fixture(scope="module")
def live_samples():
    source = LiveSource(interval_s=0.3)
    first, second = source.samples()
    return source, first, second


@pytest.mark.parametrize("name", ["cap.tar.gz", "capdir"])
def test_capture_replays_to_an_equal_view(tmp_path: Path, live_samples, name: str) -> None:
    source, first, second = live_samples
    meta = source.meta(first, second)
    live_view = build_view(first, second, meta["interval_s"], source="live host", meta=meta)
    path = write_capture(tmp_path / name, first, second, meta)
    replayed = CaptureSource(path).view()
    assert replayed == live_view
    # and it is not vacuous: the view has real series and an inventory
    assert replayed.has("node_cpu_seconds_total")
    assert replayed.has("node_network_receive_bytes_total")
    assert replayed.inventory is not None and replayed.inventory.sockets is not None
    assert replayed.interval_s == pytest.approx(meta["interval_s"])


def test_capture_keeps_unreadable_files_and_their_reasons(tmp_path: Path, live_samples) -> None:
    source, first, second = copy.deepcopy(live_samples)
    for raw in (first, second):
        raw.files.pop("proc/net/stat/nf_conntrack", None)
        raw.errors["proc/net/stat/nf_conntrack"] = "permission denied (netdoctor needs root to read it)"
    path = write_capture(tmp_path / "c.tar.gz", first, second, source.meta(first, second))
    view = CaptureSource(path).view()
    assert not view.has("node_nf_conntrack_stat_drop")
    assert "permission denied" in view.why_missing("node_nf_conntrack_stat_drop")
    assert any("nf_conntrack" in p and "permission denied" in p for p in view.problems)


def _tar_with(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_hostile_tarball_is_refused(tmp_path: Path) -> None:
    bad = _tar_with(tmp_path / "evil.tar.gz", {"../../etc/evil": b"x", "meta.json": b"{}"})
    with pytest.raises(SourceError, match="escapes"):
        CaptureSource(bad).view()
    assert not (tmp_path.parent.parent / "etc" / "evil").exists()


@pytest.mark.parametrize(
    "members, message",
    [
        ({"sample1/proc/stat": b""}, "no meta.json"),
        ({"meta.json": b"not json"}, "meta.json"),
        ({"meta.json": json.dumps({"interval_s": 0}).encode()}, "interval_s must be positive"),
        ({"meta.json": json.dumps({"interval_s": 5}).encode()}, "no sample1"),
    ],
)
def test_malformed_capture_says_what_is_wrong(tmp_path: Path, members, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        CaptureSource(_tar_with(tmp_path / "c.tar.gz", members)).view()


def test_not_a_tarball(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(os.urandom(200))
    with pytest.raises(SourceError, match="cannot read capture"):
        CaptureSource(junk).view()
    with pytest.raises(SourceError, match="no such file"):
        CaptureSource(tmp_path / "absent.tar.gz").view()


def test_cli_capture_then_diagnose_from_it(tmp_path: Path) -> None:
    out = tmp_path / "incident.tar.gz"
    done = subprocess.run(
        [sys.executable, "-m", "netdoctor", "capture", "-o", str(out), "--interval", "0.3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert out.exists() and "wrote" in done.stdout
    diag = subprocess.run(
        [sys.executable, "-m", "netdoctor", "diagnose", "--from", str(out), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert diag.returncode in (0, 1, 2, 3), diag.stderr
    report = json.loads(diag.stdout)
    assert report["schema"] == "netdoctor.diagnosis/v1"
    assert report["source"].startswith("capture ")
    assert len(report["findings"]) >= 9


def test_cli_bad_capture_is_one_line_no_traceback(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"garbage")
    done = subprocess.run(
        [sys.executable, "-m", "netdoctor", "diagnose", "--from", str(junk)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("netdoctor: cannot read capture")


def test_unreadable_tree_as_non_root_says_permission_denied(tmp_path: Path) -> None:
    """Root bypasses file modes, so drop to nobody in a child after importing, then read a locked file."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges")
    tree = tmp_path / "tree"
    (tree / "proc" / "net").mkdir(parents=True)
    (tree / "proc" / "net" / "dev").write_text(Path("/proc/net/dev").read_text())
    locked = tree / "proc" / "net" / "dev"
    locked.chmod(0)
    tree.chmod(0o755)
    tmp_path.chmod(0o755)
    code = (
        "import os\n"
        "from netdoctor.sources.reader import Reader\n"
        "reader = Reader(%r)\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "sample = reader.sample(sockets=False)\n"
        "print(sample.errors.get('proc/net/dev'))\n" % str(tree)
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "permission denied" in done.stdout


def test_reader_records_absent_files_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "proc" / "net").mkdir(parents=True)
    (tmp_path / "proc" / "net" / "dev").write_text("")
    sample = Reader(str(tmp_path)).sample(sockets=True)
    assert "nf_conntrack" in sample.errors["proc/net/stat/nf_conntrack"]
    assert "IPv6" in sample.errors["proc/net/snmp6"]
    assert sample.errors["sys/class/net"].startswith("/sys is not mounted")


def test_physical_nic_marker_survives_without_files_in_device(tmp_path: Path) -> None:
    """A NIC whose device/ held nothing readable is still physical after the capture goes through git."""
    from netdoctor.sources.reader import RawSample

    raw = RawSample(files={"sys/class/net/eth9/speed": "1000\n", "proc/net/dev": ""})
    path = write_capture(tmp_path / "cap", raw, raw, {"interval_s": 1.0})
    marker = path / "sample2" / "sys" / "class" / "net" / "eth9" / "device"
    assert marker.is_dir() and any(marker.iterdir()), "device/ must hold a file, or git drops it"
    assert Reader(str(path / "sample2"), live_extras=False).physical_interfaces(RawSample()) == ["eth9"]
