"""Every fix on a fixture root (`--root`): exact writes, dry run, idempotent re-run, rollback byte for byte.

The root is a copy of a capture of this host with known values written over it
(tests/fixes/util.py START); the journal and lock go to NETDOCTOR_STATE_DIR outside it,
so the whole-tree hash before and after compares the fix's own writes and nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from netdoctor.fixes import build_context
from netdoctor.fixes.plans import plan_conntrack, plan_irq_affinity, plan_ports, plan_rss
from netdoctor.fixes.runner import apply_plan
from netdoctor.fixes.writer import FixFailed, kernel_equal
from tests.conftest import require_root
from tests.fixes.util import REPO, START, changed, fix_env, journal_entries, run_fix, tree_state

HEADER = "# Written by `netdoctor fix --{fix}`. A re-run rewrites this file; `netdoctor fix --rollback` restores it.\n"
UDEV = 'ACTION=="add", SUBSYSTEM=="net", KERNEL=="{iface}", RUN+="{run}"\n'


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    writes: dict[str, str]  # path under the root -> its exact content afterwards


ETH0_ETHTOOL = json.loads(START[".netdoctor/ethtool/eth0.json"])

CASES = [
    Case(
        "conntrack",
        ("--conntrack", "--max", "131072"),
        {
            "proc/sys/net/netfilter/nf_conntrack_max": "131072\n",
            "sys/module/nf_conntrack/parameters/hashsize": "32768\n",
            "etc/modprobe.d/netdoctor-conntrack.conf": HEADER.format(fix="conntrack")
            + "options nf_conntrack hashsize=32768\n",
            "etc/sysctl.d/90-netdoctor-conntrack.conf": HEADER.format(fix="conntrack")
            + "net.netfilter.nf_conntrack_max = 131072\n",
        },
    ),
    Case(
        "irq-affinity",
        ("--irq-affinity", "eth0"),
        {
            # NUMA node 1 (CPUs 2, 3) first, then 0, 1; the config IRQ 40 is left alone.
            "proc/irq/41/smp_affinity_list": "2\n",
            "proc/irq/42/smp_affinity_list": "3\n",
            "proc/irq/43/smp_affinity_list": "0\n",
            "proc/irq/44/smp_affinity_list": "1\n",
            "etc/udev/rules.d/90-netdoctor-irq-affinity-eth0.rules": HEADER.format(fix="irq-affinity")
            + "".join(
                UDEV.format(iface="eth0", run=f"/bin/sh -c 'echo {cpu} > /proc/irq/{irq}/smp_affinity_list'")
                for irq, cpu in ((41, 2), (42, 3), (43, 0), (44, 1))
            ),
        },
    ),
    Case(
        "rss-channels",
        ("--rss", "eth0"),
        {
            # Default: the NIC's NUMA-local CPUs (2), within the driver's maximum (8).
            ".netdoctor/ethtool/eth0.json": json.dumps(
                {**ETH0_ETHTOOL, "channels": {"combined": 2, "max_combined": 8}}, sort_keys=True
            ),
            "etc/udev/rules.d/90-netdoctor-rss-eth0.rules": HEADER.format(fix="rss")
            + UDEV.format(iface="eth0", run="/usr/sbin/ethtool -L eth0 combined 2"),
        },
    ),
    Case(
        "rss-queues",
        ("--rss", "eth0", "--queues", "4"),
        {
            ".netdoctor/ethtool/eth0.json": json.dumps(
                {**ETH0_ETHTOOL, "channels": {"combined": 4, "max_combined": 8}}, sort_keys=True
            ),
            "etc/udev/rules.d/90-netdoctor-rss-eth0.rules": HEADER.format(fix="rss")
            + UDEV.format(iface="eth0", run="/usr/sbin/ethtool -L eth0 combined 4"),
        },
    ),
    Case(
        "rps",
        ("--rss", "eth1"),
        {
            "sys/class/net/eth1/queues/rx-0/rps_cpus": "0000000f\n",
            "sys/class/net/eth1/queues/rx-0/rps_flow_cnt": "32768\n",
            "proc/sys/net/core/rps_sock_flow_entries": "32768\n",
            "etc/sysctl.d/90-netdoctor-rps.conf": HEADER.format(fix="rss") + "net.core.rps_sock_flow_entries = 32768\n",
            "etc/udev/rules.d/90-netdoctor-rps-eth1.rules": HEADER.format(fix="rss")
            + UDEV.format(
                iface="eth1",
                run="/bin/sh -c 'echo 0000000f > /sys/class/net/eth1/queues/rx-0/rps_cpus; "
                "echo 32768 > /sys/class/net/eth1/queues/rx-0/rps_flow_cnt'",
            ),
        },
    ),
    Case(
        "ring",
        ("--ring", "eth0", "--rx", "4096", "--tx", "1024"),
        {
            ".netdoctor/ethtool/eth0.json": json.dumps(
                {**ETH0_ETHTOOL, "rings": {"rx": 4096, "rx_max": 4096, "tx": 1024, "tx_max": 4096}},
                sort_keys=True,
            ),
            "etc/udev/rules.d/90-netdoctor-ring-eth0.rules": HEADER.format(fix="ring")
            + UDEV.format(iface="eth0", run="/usr/sbin/ethtool -G eth0 rx 4096 tx 1024"),
        },
    ),
    Case(
        "ports",
        ("--ports", "--port-range", "20000 60999", "--tw-reuse"),
        {
            "proc/sys/net/ipv4/ip_local_port_range": "20000 60999\n",
            "proc/sys/net/ipv4/tcp_tw_reuse": "1\n",
            "etc/sysctl.d/90-netdoctor-ports.conf": HEADER.format(fix="ports")
            + "net.ipv4.ip_local_port_range = 20000 60999\nnet.ipv4.tcp_tw_reuse = 1\n",
        },
    ),
    Case(
        "backlog",
        ("--backlog", "--somaxconn", "8192", "--netdev-max-backlog", "2000", "--netdev-budget", "600"),
        {
            "proc/sys/net/core/somaxconn": "8192\n",
            "proc/sys/net/core/netdev_max_backlog": "2000\n",
            "proc/sys/net/core/netdev_budget": "600\n",
            "etc/sysctl.d/90-netdoctor-backlog.conf": HEADER.format(fix="backlog")
            + "net.core.somaxconn = 8192\nnet.core.netdev_max_backlog = 2000\nnet.core.netdev_budget = 600\n",
        },
    ),
]


def _with_parents(root: Path, original: dict[str, str], files: set[str]) -> set[str]:
    """The files plus the directories that had to be created for them."""
    out = set(files)
    for rel in files:
        parent = os.path.dirname(rel)
        while parent and parent not in original:
            out.add(parent)
            parent = os.path.dirname(parent)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_apply_rerun_rollback(case: Case, root: Path, state_dir: Path) -> None:
    original = tree_state(root)

    done = run_fix(root, *case.args, "--yes", state_dir=state_dir)
    assert done.returncode == 0, done.stderr
    assert "applied and verified" in done.stdout
    applied = tree_state(root)
    assert changed(original, applied) == _with_parents(root, original, set(case.writes))
    for rel, content in case.writes.items():
        assert (root / rel).read_text() == content, rel
    entries = journal_entries(state_dir)
    assert [e["action"] for e in entries] == ["apply"]
    assert entries[0]["root"] == str(root)

    again = run_fix(root, *case.args, "--yes", state_dir=state_dir)
    assert again.returncode == 0, again.stderr
    assert "already as wanted, nothing changed" in again.stdout
    assert tree_state(root) == applied
    assert [e["action"] for e in journal_entries(state_dir)] == ["apply"]

    undone = run_fix(root, "--rollback", state_dir=state_dir)
    assert undone.returncode == 0, undone.stderr
    assert f"rolled back {entries[0]['id']}" in undone.stdout
    assert tree_state(root) == original  # byte for byte, the created directories gone too
    assert [e["action"] for e in journal_entries(state_dir)] == ["apply", "rollback"]

    nothing = run_fix(root, "--rollback", state_dir=state_dir)
    assert nothing.returncode == 3
    assert "nothing to roll back" in nothing.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_dry_run_writes_nothing(case: Case, root: Path, state_dir: Path) -> None:
    original = tree_state(root)
    done = run_fix(root, *case.args, "--dry-run", state_dir=state_dir)
    assert done.returncode == 0, done.stderr
    assert "dry run: nothing was written" in done.stdout
    first_target = next(iter(case.writes))
    assert first_target.split("/")[-1].split(".")[0] in done.stdout or "eth0:" in done.stdout
    assert tree_state(root) == original
    assert not state_dir.exists()  # no journal, no lock: a dry run takes neither


def test_journal_defaults_to_the_root(root: Path) -> None:
    """Without NETDOCTOR_STATE_DIR the journal and lock live under the root: <root>/var/lib/netdoctor, <root>/run."""
    original = tree_state(root)
    done = run_fix(root, "--ports", "--port-range", "20000 60999", "--yes", state_dir=None)
    assert done.returncode == 0, done.stderr
    entries = journal_entries(root / "var/lib/netdoctor")
    assert [e["fix"] for e in entries] == ["ports"]
    assert (root / "run/netdoctor-fix.lock").exists()
    listed = run_fix(root, "--journal", state_dir=None)
    assert entries[0]["id"] in listed.stdout
    assert run_fix(root, "--rollback", entries[0]["id"], state_dir=None).returncode == 0
    state_files = {"var/lib/netdoctor", "var/lib/netdoctor/journal.jsonl", "run", "run/netdoctor-fix.lock"}
    state_files |= {d for d in ("var", "var/lib") if d not in original}
    assert changed(original, tree_state(root)) == state_files


# --- failures part-way leave nothing half-applied ------------------------------------------------
@pytest.mark.parametrize("fail_after", [1, 2, 3])
def test_injected_failure_rolls_back(fail_after: int, root: Path, state_dir: Path) -> None:
    original = tree_state(root)
    ctx = build_context(str(root), 0.05)
    plan = plan_ports(ctx, (20000, 60999), True)
    assert len(plan.changes) == 3  # two sysctls and the sysctl.d file
    with pytest.raises(FixFailed, match="rolled back, nothing changed"):
        apply_plan(plan, ctx.writer, inject_failure_after=fail_after)
    assert tree_state(root) == original
    assert journal_entries(state_dir) == []


@pytest.mark.parametrize("fail_after", [1, 2, 3, 4])
def test_injected_failure_conntrack(fail_after: int, root: Path, state_dir: Path) -> None:
    original = tree_state(root)
    ctx = build_context(str(root), 0.05)
    plan = plan_conntrack(ctx, 131072)
    assert len(plan.changes) == 4
    with pytest.raises(FixFailed, match="injected failure"):
        apply_plan(plan, ctx.writer, inject_failure_after=fail_after)
    assert tree_state(root) == original


def test_injected_failure_irq_and_rss(root: Path, state_dir: Path) -> None:
    original = tree_state(root)
    ctx = build_context(str(root), 0.05)
    for plan in (plan_irq_affinity(ctx, "eth0"), plan_rss(ctx, "eth0"), plan_rss(ctx, "eth1")):
        with pytest.raises(FixFailed):
            apply_plan(plan, ctx.writer, inject_failure_after=len(plan.changes))
        assert tree_state(root) == original, plan.fix_id


def test_read_only_target_fails_part_way_and_rolls_back(root: Path, state_dir: Path) -> None:
    """A real failure: tcp_tw_reuse on a read-only bind mount (EROFS even for root), after the range was written."""
    require_root()
    original = tree_state(root)
    target = root / "proc/sys/net/ipv4/tcp_tw_reuse"
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    argv = [
        "unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(target),
        sys.executable, "-m", "netdoctor", "fix", "--root", str(root), "--interval", "0.05",
        "--ports", "--port-range", "20000 60999", "--tw-reuse", "--yes",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=fix_env(state_dir), cwd=REPO)
    assert done.returncode == 5, (done.stdout, done.stderr)
    assert "tcp_tw_reuse" in done.stderr and "Read-only file system" in done.stderr
    assert "rolled back, nothing changed" in done.stderr
    assert tree_state(root) == original  # ip_local_port_range, written first, is back
    assert journal_entries(state_dir) == []


def test_directory_where_a_file_is_expected(root: Path, state_dir: Path) -> None:
    (root / "etc/sysctl.d/90-netdoctor-ports.conf").mkdir(parents=True)
    original = tree_state(root)
    done = run_fix(root, "--ports", "--port-range", "20000 60999", "--yes", state_dir=state_dir)
    assert done.returncode == 3, done.stderr
    assert "cannot read /etc/sysctl.d/90-netdoctor-ports.conf: Is a directory" in done.stderr
    assert tree_state(root) == original
    assert journal_entries(state_dir) == []


# --- refusals ------------------------------------------------------------------------------------
def test_another_fix_holds_the_lock(root: Path, state_dir: Path) -> None:
    holder_code = (
        "import sys\n"
        "from netdoctor.fixes.runner import fix_lock\n"
        "from netdoctor.fixes.writer import Writer\n"
        "with fix_lock(Writer(sys.argv[1])):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=fix_env(state_dir),
        cwd=REPO,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        original = tree_state(root)
        done = run_fix(root, "--ports", "--port-range", "20000 60999", "--yes", state_dir=state_dir)
        assert done.returncode == 4, done.stderr
        assert f"another netdoctor fix is running (pid {holder.pid})" in done.stderr
        assert tree_state(root) == original
        rollback = run_fix(root, "--rollback", state_dir=state_dir)
        assert rollback.returncode == 4 and "another netdoctor fix is running" in rollback.stderr
    finally:
        holder.communicate(input="", timeout=10)
    done = run_fix(root, "--ports", "--port-range", "20000 60999", "--yes", state_dir=state_dir)
    assert done.returncode == 0, done.stderr  # the lock dies with its holder


def _as_nobody(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI after dropping root in the same process.

    The imports happen as root first: this interpreter lives under /root (pyenv), which
    nobody cannot read, and the point is netdoctor's own check, not Python's packaging.
    """
    code = (
        "import os, sys\n"
        "import netdoctor.cli, netdoctor.fixes, netdoctor.fixes.command, netdoctor.fixes.plans\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "sys.argv = ['netdoctor', *sys.argv[1:]]\n"
        "netdoctor.cli.main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, env=fix_env(state_dir), cwd="/"
    )


def test_not_root_is_refused_with_no_change(root: Path, state_dir: Path) -> None:
    require_root()  # to become "not root" the test starts as root
    host_range = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
    done = _as_nobody("fix", "--ports", "--port-range", "20000 60999", "--yes", state_dir=state_dir)
    assert done.returncode == 4, done.stderr
    assert "netdoctor fix changes kernel settings and needs root (run with sudo)" in done.stderr
    assert Path("/proc/sys/net/ipv4/ip_local_port_range").read_text() == host_range
    rollback = _as_nobody("fix", "--rollback", state_dir=state_dir)
    assert rollback.returncode == 4 and "needs root" in rollback.stderr

    original = tree_state(root)
    done = _as_nobody("fix", "--root", str(root), "--ports", "--port-range", "20000 60999", "--yes",
                      state_dir=state_dir)  # fmt: skip
    assert done.returncode == 4, done.stderr
    assert f"{root} is not writable by this user" in done.stderr
    assert tree_state(root) == original
    assert not state_dir.exists()


def test_irqbalance_running_refuses_irq_affinity(root: Path, state_dir: Path) -> None:
    (root / "proc/4242").mkdir()
    (root / "proc/4242/comm").write_text("irqbalance\n")
    original = tree_state(root)
    done = run_fix(root, "--irq-affinity", "eth0", "--yes", state_dir=state_dir)
    assert done.returncode == 4, done.stderr
    assert "irqbalance (pid 4242) is running and would undo this" in done.stderr
    stop = run_fix(root, "--irq-affinity", "eth0", "--stop-irqbalance", "--yes", state_dir=state_dir)
    assert stop.returncode == 4
    assert "--stop-irqbalance works on the live host only" in stop.stderr
    dry = run_fix(root, "--irq-affinity", "eth0", "--dry-run", state_dir=state_dir)
    assert dry.returncode == 4 and "REFUSED: irqbalance (pid 4242)" in dry.stdout
    assert tree_state(root) == original


def test_conntrack_lowering_refused(root: Path, state_dir: Path) -> None:
    original = tree_state(root)
    done = run_fix(root, "--conntrack", "--max", "1000", "--yes", state_dir=state_dir)
    assert done.returncode == 4
    assert "--max 1000 is below the current 65536: netdoctor only raises it" in done.stderr
    assert tree_state(root) == original


def test_conntrack_too_big_for_memory_refused(root: Path, state_dir: Path) -> None:
    meminfo = root / "proc/meminfo"
    lines = meminfo.read_text().splitlines(keepends=True)
    meminfo.write_text("".join("MemTotal:        1048576 kB\n" if ln.startswith("MemTotal:") else ln for ln in lines))
    original = tree_state(root)
    # 1 GiB x 5% / 320 B = 167772 entries at most.
    done = run_fix(root, "--conntrack", "--max", "262144", "--yes", state_dir=state_dir)
    assert done.returncode == 4
    assert "262144 entries x 320 B = 80 MiB is more than 5% of memory (1024 MiB)" in done.stderr
    assert tree_state(root) == original
    fits = run_fix(root, "--conntrack", "--max", "131072", "--dry-run", state_dir=state_dir)
    assert fits.returncode == 0, fits.stderr


def test_conntrack_default_comes_from_the_diagnosis(root: Path, state_dir: Path) -> None:
    (root / "proc/sys/net/netfilter/nf_conntrack_count").write_text("60000\n")  # 92% of 65536
    done = run_fix(root, "--conntrack", "--yes", state_dir=state_dir)
    assert done.returncode == 0, done.stderr
    # The check proposes 2x the peak rounded up to a power of two, hash size max/4.
    assert (root / "proc/sys/net/netfilter/nf_conntrack_max").read_text() == "131072\n"
    assert (root / "sys/module/nf_conntrack/parameters/hashsize").read_text() == "32768\n"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--ports", "--port-range", "70000 80000"), 4, "port range 70000-80000 must lie within 1024-65535"),
        (("--ports", "--port-range", "60000 50000"), 4, "port range 60000-50000 must lie within 1024-65535"),
        (("--ports", "--port-range", "80 1000"), 4, "port range 80-1000 must lie within 1024-65535"),
        (("--ports", "--port-range", "40000 41000"), 4, "fewer than the current 32768-60999 (28232)"),
        (("--ports", "--port-range", "abc"), 3, "--port-range 'abc': expected 'LOW HIGH'"),
        (("--ports", "--port-range", "1;rm -rf /"), 3, "expected 'LOW HIGH'"),
        (("--rss", "eth0", "--queues", "0"), 4, "--queues 0: must be at least 1"),
        (("--ring", "eth0", "--rx", "99999"), 4, "rx 99999 exceeds the driver's maximum 4096"),
        (("--ring", "eth0", "--rx", "128"), 4, "rx 128 is below the current 256"),
        (("--backlog", "--somaxconn", "-5"), 4, "net.core.somaxconn=-5 must be a positive 32-bit integer"),
        (("--backlog", "--somaxconn", "99999999999"), 4, "must be a positive 32-bit integer"),
        (("--conntrack", "--max", "0"), 4, "--max 0 is below the current 65536"),
        (("--rss", "nosuch0"), 3, "no NIC nosuch0"),
        (("--irq-affinity", "eth0x"), 4, "eth0x has no IRQ of its own"),
        (("--irq-affinity", "eth1/../../x"), 3, "--irq-affinity 'eth1/../../x': not an interface name"),
        (("--rss", '"; reboot; "'), 3, "not an interface name"),
        (("--ring", ".."), 3, "--ring '..': not an interface name"),
        (("--from-diagnosis",), 4, "not on a terminal, pass --yes"),
        ((), 3, "name a fix"),
    ],
)
def test_hostile_or_odd_values_refused(
    args: tuple[str, ...], code: int, message: str, root: Path, state_dir: Path
) -> None:
    original = tree_state(root)
    done = run_fix(root, *args, "--yes" if args != ("--from-diagnosis",) else "--interval=0.05", state_dir=state_dir)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2
    assert tree_state(root) == original
    assert journal_entries(state_dir) == []


def test_rollback_of_an_older_fix_waits_for_the_newer_one(root: Path, state_dir: Path) -> None:
    original = tree_state(root)
    assert run_fix(root, "--ports", "--port-range", "20000 60999", "--yes", state_dir=state_dir).returncode == 0
    after_first = tree_state(root)
    assert run_fix(root, "--ports", "--port-range", "10000 60999", "--yes", state_dir=state_dir).returncode == 0
    first, second = (e["id"] for e in journal_entries(state_dir))

    refused = run_fix(root, "--rollback", str(first), state_dir=state_dir)
    assert refused.returncode == 4
    assert f"later fix(es) {second} changed again; roll those back first" in refused.stderr

    assert run_fix(root, "--rollback", state_dir=state_dir).returncode == 0
    assert tree_state(root) == after_first
    assert run_fix(root, "--rollback", str(first), state_dir=state_dir).returncode == 0
    assert tree_state(root) == original
    unknown = run_fix(root, "--rollback", "nope", state_dir=state_dir)
    assert unknown.returncode == 3 and "no applied fix nope" in unknown.stderr


def test_shared_state_dir_keeps_roots_apart(root: Path, tmp_path: Path, state_dir: Path, captured_tree: Path) -> None:
    from tests.fixes.util import make_root

    other = make_root(captured_tree, tmp_path / "other")
    other_original = tree_state(other)
    assert run_fix(other, "--ports", "--port-range", "20000 60999", "--yes", state_dir=state_dir).returncode == 0
    time.sleep(0.01)
    nothing = run_fix(root, "--rollback", state_dir=state_dir)
    assert nothing.returncode == 3 and "nothing to roll back" in nothing.stderr
    assert run_fix(other, "--rollback", state_dir=state_dir).returncode == 0
    assert tree_state(other) == other_original


def test_kernel_values_compare_by_meaning() -> None:
    rps = "sys/class/net/eth0/queues/rx-0/rps_cpus"
    assert kernel_equal(rps, "3\n", "00000003\n")
    assert kernel_equal(rps, "00000000,00000003\n", "3")
    assert not kernel_equal(rps, "3\n", "00000007\n")
    affinity = "proc/irq/41/smp_affinity_list"
    assert kernel_equal(affinity, "0-1\n", "0,1\n")
    assert not kernel_equal(affinity, "0-1\n", "0\n")
    assert kernel_equal("proc/sys/net/ipv4/ip_local_port_range", "20000\t50000\n", "20000 50000\n")
    assert not kernel_equal("proc/sys/net/ipv4/ip_local_port_range", "20000\t50000\n", "20000 50001\n")
