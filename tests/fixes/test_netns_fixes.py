"""`netdoctor fix` on the real kernel, inside network namespaces made by the test.

Each fix runs as `ip netns exec NS unshare -m sh -c 'mount overlay on /etc; exec python -m
netdoctor fix ...'`: the namespace gives the fix its own sysctls and NICs, the private
mount namespace with an overlay on /etc keeps the persisted files (sysctl.d, udev rules)
in the test's directory instead of the host's /etc, and NETDOCTOR_STATE_DIR keeps the
journal and lock out of the host's /var/lib and /run. The values are read back with
independent tools (`ethtool -l`, `cat`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require, require_binary, require_root
from tests.fixes.util import REPO, fix_env, journal_entries
from tests.netns import Namespace, netdoctor_argv, run_in, single_netns

pytestmark = pytest.mark.real

HEADER = "# Written by `netdoctor fix --{fix}`. A re-run rewrites this file; `netdoctor fix --rollback` restores it.\n"
OVERLAY_ETC = 'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc && shift && exec "$@"'


@pytest.fixture(autouse=True)
def _real_kernel() -> None:
    require_root()
    require_binary("ip")
    require_binary("unshare")
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    require(probe.returncode == 0, "cannot list network namespaces here (ip netns list failed)")


@pytest.fixture
def etc_dir(tmp_path: Path) -> Path:
    """Upper layer of the /etc overlay: what the fixes persisted lands in etc_dir/upper."""
    for sub in ("upper", "work"):
        (tmp_path / "etc" / sub).mkdir(parents=True)
    return tmp_path / "etc"


def fix_in(
    ns: Namespace | None, etc_dir: Path, state_dir: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`netdoctor fix ARGS` in `ns` (None: the initial namespace) with /etc overlaid and the state dir set."""
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", OVERLAY_ETC, "sh", str(etc_dir)]
    argv += netdoctor_argv("fix", "--interval", "0.2", *args)
    if ns is not None:
        argv = ["ip", "netns", "exec", ns.name, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=fix_env(state_dir), cwd=REPO)


def read_in(ns: Namespace, path: str) -> str:
    return run_in(ns, ["cat", path]).stdout


def ethtool_channels(ns: Namespace, iface: str) -> dict[str, dict[str, str]]:
    """`ethtool -l` as {"max": {"RX": "2", ...}, "current": {...}}, parsed here, not by netdoctor."""
    out = run_in(ns, [require_binary("ethtool"), "-l", iface]).stdout
    section = ""
    parsed: dict[str, dict[str, str]] = {"max": {}, "current": {}}
    for line in out.splitlines():
        if line.startswith("Pre-set maximums"):
            section = "max"
        elif line.startswith("Current hardware settings"):
            section = "current"
        elif section and ":" in line:
            key, _, value = line.partition(":")
            parsed[section][key.strip()] = value.strip()
    return parsed


@contextlib.contextmanager
def veth_in(ns: Namespace, name: str, queues: int) -> Iterator[str]:
    """A veth pair inside `ns` with at most `queues` rx/tx queues, one in use (removed with the namespace).

    veth made with numrxqueues N starts with N in use; `ethtool -L rx 1 tx 1` brings it to
    the single-channel state a fix starts from (its maximum stays N).
    """
    q = str(queues)
    run_in(ns, ["ip", "link", "add", name, "numrxqueues", q, "numtxqueues", q, "type", "veth",
                "peer", "name", name + "p", "numrxqueues", q, "numtxqueues", q])  # fmt: skip
    if queues > 1:
        run_in(ns, [require_binary("ethtool"), "-L", name, "rx", "1", "tx", "1"])
    run_in(ns, ["ip", "link", "set", name, "up"])
    yield name


def test_rss_channels_on_a_veth(tmp_path: Path, etc_dir: Path) -> None:
    require_binary("ethtool")
    state = tmp_path / "state"
    with single_netns() as ns, veth_in(ns, "ndrss0", 2) as veth:
        before = ethtool_channels(ns, veth)
        assert before["max"]["RX"] == "2" and before["max"]["TX"] == "2"
        assert before["current"]["RX"] == "1" and before["current"]["TX"] == "1"

        dry = fix_in(ns, etc_dir, state, "--rss", veth, "--queues", "2", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f'~ {veth}:channels: {{"rx": 1, "tx": 1}} -> {{"rx": 2, "tx": 2}}' in dry.stdout
        assert ethtool_channels(ns, veth)["current"]["RX"] == "1"

        done = fix_in(ns, etc_dir, state, "--rss", veth, "--queues", "2", "--yes")
        assert done.returncode == 0, done.stderr
        now = ethtool_channels(ns, veth)
        assert now["current"]["RX"] == "2" and now["current"]["TX"] == "2"
        assert run_in(ns, ["ls", f"/sys/class/net/{veth}/queues"]).stdout.split() == ["rx-0", "rx-1", "tx-0", "tx-1"]
        rule = etc_dir / f"upper/udev/rules.d/90-netdoctor-rss-{veth}.rules"
        assert rule.read_text() == HEADER.format(fix="rss") + (
            f'ACTION=="add", SUBSYSTEM=="net", KERNEL=="{veth}", RUN+="/usr/sbin/ethtool -L {veth} rx 2 tx 2"\n'
        )

        again = fix_in(ns, etc_dir, state, "--rss", veth, "--queues", "2", "--yes")
        assert again.returncode == 0 and "already as wanted" in again.stdout

        undone = fix_in(ns, etc_dir, state, "--rollback")
        assert undone.returncode == 0, undone.stderr
        restored = ethtool_channels(ns, veth)
        assert restored["current"]["RX"] == "1" and restored["current"]["TX"] == "1"
        assert not rule.exists() and not (etc_dir / "upper/udev").exists()


def test_rps_on_a_single_queue_veth(tmp_path: Path, etc_dir: Path) -> None:
    """A veth made with one rx queue (`ethtool -l` max RX 1): --rss falls back to RPS + RFS."""
    state = tmp_path / "state"
    # netdoctor spreads RPS over the online CPUs it sees in /proc/stat (cpuN lines).
    online = [int(line.split()[0][3:]) for line in Path("/proc/stat").read_text().splitlines() if line[3:4].isdigit()]
    mask = sum(1 << cpu for cpu in online)
    with single_netns() as ns, veth_in(ns, "ndrps0", 1) as veth:
        assert ethtool_channels(ns, veth)["max"]["RX"] == "1"
        queue = f"/sys/class/net/{veth}/queues/rx-0"
        assert int(read_in(ns, f"{queue}/rps_cpus").replace(",", ""), 16) == 0

        done = fix_in(ns, etc_dir, state, "--rss", veth, "--yes")
        assert done.returncode == 0, done.stderr
        assert int(read_in(ns, f"{queue}/rps_cpus").replace(",", ""), 16) == mask
        assert read_in(ns, f"{queue}/rps_flow_cnt").strip() == "32768"
        rule = etc_dir / f"upper/udev/rules.d/90-netdoctor-rps-{veth}.rules"
        assert f"echo {mask:08x} > /sys/class/net/{veth}/queues/rx-0/rps_cpus" in rule.read_text()
        # rps_sock_flow_entries exists in the initial namespace only: noted, not written.
        assert "rps_sock_flow_entries is not exposed here" in done.stdout
        assert not (etc_dir / "upper/sysctl.d").exists()

        undone = fix_in(ns, etc_dir, state, "--rollback")
        assert undone.returncode == 0, undone.stderr
        assert int(read_in(ns, f"{queue}/rps_cpus").replace(",", ""), 16) == 0, (undone.stdout, journal_entries(state))
        assert read_in(ns, f"{queue}/rps_flow_cnt").strip() == "0"
        assert not rule.exists()


def test_ports_sysctls_in_a_namespace(tmp_path: Path, etc_dir: Path) -> None:
    state = tmp_path / "state"
    host_range = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
    host_reuse = Path("/proc/sys/net/ipv4/tcp_tw_reuse").read_text()
    with single_netns() as ns:
        range_path, reuse_path = "/proc/sys/net/ipv4/ip_local_port_range", "/proc/sys/net/ipv4/tcp_tw_reuse"
        original_range, original_reuse = read_in(ns, range_path), read_in(ns, reuse_path)
        assert original_reuse.strip() != "1"

        done = fix_in(ns, etc_dir, state, "--ports", "--port-range", "20000 50000", "--tw-reuse", "--yes")
        assert done.returncode == 0, done.stderr
        assert read_in(ns, range_path).split() == ["20000", "50000"]
        assert read_in(ns, reuse_path).strip() == "1"
        assert (etc_dir / "upper/sysctl.d/90-netdoctor-ports.conf").read_text() == HEADER.format(fix="ports") + (
            "net.ipv4.ip_local_port_range = 20000 50000\nnet.ipv4.tcp_tw_reuse = 1\n"
        )
        # The namespace's sysctls, not the host's; the host's /etc untouched.
        assert Path("/proc/sys/net/ipv4/ip_local_port_range").read_text() == host_range
        assert Path("/proc/sys/net/ipv4/tcp_tw_reuse").read_text() == host_reuse
        assert not Path("/etc/sysctl.d/90-netdoctor-ports.conf").exists()
        [entry] = journal_entries(state)
        assert entry["fix"] == "ports" and len(entry["changes"]) == 3

        hostile = fix_in(ns, etc_dir, state, "--ports", "--port-range", "70000 80000", "--yes")
        assert hostile.returncode == 4 and "must lie within 1024-65535" in hostile.stderr
        assert read_in(ns, range_path).split() == ["20000", "50000"]

        undone = fix_in(ns, etc_dir, state, "--rollback")
        assert undone.returncode == 0, undone.stderr
        assert read_in(ns, range_path) == original_range
        assert read_in(ns, reuse_path) == original_reuse
        # (upper/sysctl.d stays: the overlay copied the host's directory up; the file is gone)
        assert not (etc_dir / "upper/sysctl.d/90-netdoctor-ports.conf").exists()


def test_conntrack_max_on_the_host(tmp_path: Path, etc_dir: Path) -> None:
    """nf_conntrack_max is writable in the initial namespace only: opt in, and the original comes back."""
    if os.environ.get("NETDOCTOR_TEST_HOST_SYSCTL") != "1":
        pytest.skip("changes the host's nf_conntrack_max: set NETDOCTOR_TEST_HOST_SYSCTL=1 to run it")
    max_path = Path("/proc/sys/net/netfilter/nf_conntrack_max")
    hash_path = Path("/sys/module/nf_conntrack/parameters/hashsize")
    require(max_path.exists(), "nf_conntrack is not loaded on this host")
    original_max, original_hash = max_path.read_text(), hash_path.read_text() if hash_path.exists() else None
    state = tmp_path / "state"
    target = int(original_max) * 2
    try:
        done = fix_in(None, etc_dir, state, "--conntrack", "--max", str(target), "--yes")
        assert done.returncode == 0, done.stderr
        assert int(max_path.read_text()) == target
        sysctl_file = (etc_dir / "upper/sysctl.d/90-netdoctor-conntrack.conf").read_text()
        assert f"net.netfilter.nf_conntrack_max = {target}\n" in sysctl_file
        if original_hash is not None:
            assert int(hash_path.read_text()) >= target // 4
        undone = fix_in(None, etc_dir, state, "--rollback")
        assert undone.returncode == 0, undone.stderr
        assert max_path.read_text() == original_max
        if original_hash is not None:
            assert hash_path.read_text() == original_hash
    finally:
        if max_path.read_text() != original_max:
            max_path.write_text(original_max)
        if original_hash is not None and hash_path.read_text() != original_hash:
            hash_path.write_text(original_hash)


def _diagnose(ns: Namespace) -> dict[str, object]:
    proc = run_in(ns, netdoctor_argv("diagnose", "--format", "json", "--interval", "1"), check=False)
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def _problem_entities(report: dict[str, object]) -> list[str]:
    out: list[str] = []

    def walk(findings: list[dict[str, object]]) -> None:
        for finding in findings:
            if finding["status"] == "problem":
                out.append(f"{finding['check']} {finding['entity']['name']}")  # type: ignore[index]
            walk(finding["explained_by"])  # type: ignore[arg-type]

    walk(report["findings"])  # type: ignore[arg-type]
    return out


def test_diagnose_fix_from_diagnosis_diagnose(tmp_path: Path, etc_dir: Path) -> None:
    """Ephemeral ports run out toward one destination; the fix from the diagnosis widens the range."""
    from tests.scenarios import ephemeral_ports

    state = tmp_path / "state"
    with ephemeral_ports(port_range=(40000, 40099), busy=95, fine=2) as run:
        busy = str(run.facts["busy_destination"])
        first = _problem_entities(_diagnose(run.namespace))
        assert any(p.startswith("ephemeral_ports ") and busy in p for p in first), first

        done = fix_in(run.namespace, etc_dir, state, "--from-diagnosis", "--yes")
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert "applied and verified ports" in done.stdout
        assert read_in(run.namespace, "/proc/sys/net/ipv4/ip_local_port_range").split() == ["1024", "65535"]

        second = _problem_entities(_diagnose(run.namespace))
        assert not any(busy in p for p in second), second

        undone = fix_in(run.namespace, etc_dir, state, "--rollback")
        assert undone.returncode == 0, undone.stderr
        assert read_in(run.namespace, "/proc/sys/net/ipv4/ip_local_port_range").split() == ["40000", "40099"]
    assert sys.executable  # the fix ran with this interpreter (netdoctor_argv)
