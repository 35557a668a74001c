"""Helpers for the `netdoctor fix` tests: fixture roots, whole-tree hashes, running the CLI.

Fixture roots start from a real capture of this host (`netdoctor capture`, its second
sample is a root tree with proc/ and sys/), then get known values written over the
files the fixes touch, so each test can assert the exact bytes a fix writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Known starting values in every fixture root (what the assertions compare against).
START = {
    "proc/sys/net/netfilter/nf_conntrack_max": "65536\n",
    "proc/sys/net/netfilter/nf_conntrack_count": "1200\n",
    "proc/sys/net/netfilter/nf_conntrack_buckets": "16384\n",
    "sys/module/nf_conntrack/parameters/hashsize": "16384\n",
    "proc/sys/net/ipv4/ip_local_port_range": "32768\t60999\n",
    "proc/sys/net/ipv4/ip_local_reserved_ports": "\n",
    "proc/sys/net/ipv4/tcp_tw_reuse": "2\n",
    "proc/sys/net/core/somaxconn": "4096\n",
    "proc/sys/net/core/netdev_max_backlog": "1000\n",
    "proc/sys/net/core/netdev_budget": "300\n",
    "proc/sys/net/core/netdev_budget_usecs": "2000\n",
    "proc/sys/net/core/rps_sock_flow_entries": "0\n",
    # eth0: a 4-queue NIC on NUMA node 1 (CPUs 2-3); eth1: a single-queue NIC.
    "sys/class/net/eth0/device/numa_node": "1\n",
    "sys/devices/system/node/node1/cpulist": "2-3\n",
    "sys/class/net/eth1/queues/rx-0/rps_cpus": "0\n",
    "sys/class/net/eth1/queues/rx-0/rps_flow_cnt": "0\n",
    "sys/class/net/eth1/mtu": "1500\n",
    "sys/class/net/eth1/speed": "1000\n",
    ".netdoctor/ethtool/eth0.json": json.dumps(
        {
            "channels": {"combined": 1, "max_combined": 8},
            "rings": {"rx": 256, "rx_max": 4096, "tx": 256, "tx_max": 4096},
        },
        sort_keys=True,
    ),
    ".netdoctor/ethtool/eth1.json": json.dumps(
        {"channels": {"combined": 1, "max_combined": 1}, "rings": None}, sort_keys=True
    ),
}
ETH0_IRQS = {41: "eth0-TxRx-0", 42: "eth0-TxRx-1", 43: "eth0-TxRx-2", 44: "eth0-TxRx-3"}
INTERRUPTS = (
    "           CPU0       CPU1       CPU2       CPU3       \n"
    " 40:          5          0          0          0  PCI-MSIX-0000:00:03.0   0-edge      eth0-config\n"
    + "".join(
        f" {irq}:     {100000 - 1000 * i:6d}          0          0          0  PCI-MSIX-0000:00:03.0"
        f"   {i + 1}-edge      {name}\n"
        for i, (irq, name) in enumerate(ETH0_IRQS.items())
    )
    + " 45:       5000          0          0          0  PCI-MSIX-0000:00:04.0   0-edge      eth1\n"
    + "NMI:          0          0          0          0   Non-maskable interrupts\n"
    + "LOC:      10000      10000      10000      10000   Local timer interrupts\n"
)


def capture_tree(dest: Path) -> Path:
    """A capture of this host; its sample2/ is a root tree."""
    done = subprocess.run(
        [sys.executable, "-m", "netdoctor", "capture", "-o", str(dest), "--interval", "0.2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return dest / "sample2"


def _four_cpu_stat(text: str) -> str:
    """/proc/stat with exactly cpu0..cpu3, so the tree's CPU count does not depend on the host."""
    lines = text.splitlines(keepends=True)
    per_cpu = [line for line in lines if line.startswith("cpu") and line[3:4].isdigit()]
    template = per_cpu[0].split(None, 1)[1]
    out: list[str] = []
    for line in lines:
        if line.startswith("cpu") and line[3:4].isdigit():
            if line is per_cpu[0]:
                out.extend(f"cpu{n} {template}" for n in range(4))
            continue
        out.append(line)
    return "".join(out)


def make_root(template: Path, dest: Path) -> Path:
    """A fixture root: the captured tree with the known values of START written over it."""
    shutil.copytree(template, dest, symlinks=True)
    for rel, text in START.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (dest / "sys/class/net/eth1/device").mkdir(parents=True, exist_ok=True)
    (dest / "sys/class/net/eth0/device").mkdir(parents=True, exist_ok=True)
    stat_path = dest / "proc/stat"
    stat_path.write_text(_four_cpu_stat(stat_path.read_text()))
    shutil.rmtree(dest / "proc/irq", ignore_errors=True)
    (dest / "proc/interrupts").write_text(INTERRUPTS)
    for irq in [40, *ETH0_IRQS, 45]:
        (dest / f"proc/irq/{irq}").mkdir(parents=True)
        (dest / f"proc/irq/{irq}/smp_affinity_list").write_text("0-3\n")
    return dest


def tree_state(root: Path) -> dict[str, str]:
    """Every entry under `root`: directories, symlinks, and files by content hash and mode.

    Two trees with the same state have the same file list, the same bytes in every file
    and the same permission bits (metadata such as mtime is left out on purpose).
    """
    state: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                state[rel] = "link:" + os.readlink(path)
            elif stat.S_ISDIR(info.st_mode):
                state[rel] = "dir"
            else:
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
                state[rel] = f"file:{stat.S_IMODE(info.st_mode):o}:{digest}"
    return state


def fix_env(state_dir: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NETDOCTOR_STATE_DIR", None)
    if state_dir is not None:
        env["NETDOCTOR_STATE_DIR"] = str(state_dir)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_fix(
    root: Path | str, *args: str, state_dir: Path | None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m netdoctor fix --root ROOT ARGS` with a short sampling interval."""
    argv = [sys.executable, "-m", "netdoctor", "fix", "--root", str(root), "--interval", "0.05", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=fix_env(state_dir), cwd=REPO)


def journal_entries(state_dir: Path) -> list[dict[str, object]]:
    path = state_dir / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    """Entries added, removed or different between two tree states."""
    return {rel for rel in before.keys() | after.keys() if before.get(rel) != after.get(rel)}
