"""Benchmark: socket inventory read + grouping vs `ss -tan`, at 100k+ TCP sockets in throwaway namespaces.

Why: the issue's budget is "read the socket inventory and group it by (local address, remote address, remote
port) and state in at most 1.2x the wall time of `ss -tan`, peak RSS under 100 MB". This script builds the
sockets itself (see bench/_netns.py: server + client namespaces over veth, ESTABLISHED connections held by
several client processes, plus client-side TIME_WAIT), then measures inside the client namespace:

  ss -tan >/dev/null                      (netlink inet_diag, C)
  cat /proc/net/tcp /proc/net/tcp6        (the kernel's text formatting alone: a floor for any /proc reader)
  netdoctor, fresh python per run          read_destination_state_counts(): in-process seconds, and VmHWM
  netdoctor sequential (for reference)     read both files, then group_by_destination_and_state()
  netdoctor full table (for reference)     parse_socket_table() on both files, SocketTable.merge

It also checks that netdoctor's groups equal what `ss -tan` shows. Run as root:

    python3 bench/sockets_bench.py                      # ~136k client sockets, 9 rounds
    python3 bench/sockets_bench.py --results bench/RESULTS.md   # also rewrite the "Socket inventory" section

Namespaces and child processes are removed on exit, Ctrl-C and SIGTERM (and stale ones on the next run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _netns import NetnsLab, install_signal_cleanup  # noqa: E402

SS_STATES = {
    "ESTAB": "ESTABLISHED",
    "SYN-SENT": "SYN_SENT",
    "SYN-RECV": "SYN_RECV",
    "FIN-WAIT-1": "FIN_WAIT1",
    "FIN-WAIT-2": "FIN_WAIT2",
    "TIME-WAIT": "TIME_WAIT",
    "UNCONN": "CLOSE",
    "CLOSE-WAIT": "CLOSE_WAIT",
    "LAST-ACK": "LAST_ACK",
    "LISTEN": "LISTEN",
    "CLOSING": "CLOSING",
}

# Runs in a fresh interpreter per round, so VmHWM is this work's peak alone (plus the interpreter).
CHILD_FAST = """
import json, time
t0 = time.perf_counter()
from netdoctor.sources.owners import read_destination_state_counts
t1 = time.perf_counter()
groups = read_destination_state_counts()
t2 = time.perf_counter()
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": t2 - t1, "import": t1 - t0, "vmhwm_kb": hwm, "sockets": sum(groups.values()),
                  "groups": [[*k, v] for k, v in groups.items()]}))
"""
CHILD_SEQUENTIAL = """
import json, os, time
from netdoctor.sources.parsers.sockets import group_by_destination_and_state
t1 = time.perf_counter()
texts = {}
for family, name in ((4, "tcp"), (6, "tcp6")):
    fd = os.open("/proc/net/" + name, os.O_RDONLY)
    parts = []
    while chunk := os.read(fd, 1 << 20):
        parts.append(chunk)
    os.close(fd)
    texts[("tcp", family)] = b"".join(parts).decode("ascii")
groups = group_by_destination_and_state(texts)
t2 = time.perf_counter()
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": t2 - t1, "vmhwm_kb": hwm, "sockets": sum(groups.values())}))
"""
CHILD_FULL = """
import json, os, time
from netdoctor.sources.parsers.sockets import SocketTable, parse_socket_table
t1 = time.perf_counter()
tables = []
for family, name in ((4, "tcp"), (6, "tcp6")):
    fd = os.open("/proc/net/" + name, os.O_RDONLY)
    parts = []
    while chunk := os.read(fd, 1 << 20):
        parts.append(chunk)
    os.close(fd)
    tables.append(parse_socket_table(b"".join(parts).decode("ascii"), "tcp", family))
table = SocketTable.merge(tables)
usage = table.destination_usage(1024, 65535)
t2 = time.perf_counter()
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": t2 - t1, "vmhwm_kb": hwm, "sockets": len(table)}))
"""


def _timed(argv: list[str], **kwargs: object) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(argv, check=True, text=True, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - start, done


def _python_child(code: str) -> tuple[float, dict[str, object]]:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    wall, done = _timed([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    return wall, json.loads(done.stdout)


def ss_groups() -> dict[tuple[str, str, int, str], int]:
    """(local ip, remote ip, remote port, state) counts from `ss -tan` text, to check netdoctor's answer."""
    out = subprocess.run(["ss", "-tan"], check=True, capture_output=True, text=True).stdout
    groups: dict[tuple[str, str, int, str], int] = {}
    for line in out.splitlines()[1:]:
        state, _recv, _send, local, remote = line.split()[:5]
        local_ip = local.rsplit(":", 1)[0].strip("[]")
        remote_ip, remote_port = remote.rsplit(":", 1)
        port = 0 if remote_port == "*" else int(remote_port)
        key = (local_ip, remote_ip.strip("[]").replace("*", "0.0.0.0"), port, SS_STATES[state])
        groups[key] = groups.get(key, 0) + 1
    return groups


def measure(rounds: int) -> dict[str, object]:
    """Runs inside the client namespace: interleaved rounds of each contender; medians reported."""
    times: dict[str, list[float]] = {k: [] for k in ("ss", "cat", "nd", "nd_wall", "nd_seq", "nd_full")}
    hwm: dict[str, list[int]] = {k: [] for k in ("nd", "nd_seq", "nd_full")}
    sockets = 0
    with open(os.devnull, "w") as devnull:
        for _ in range(rounds):
            times["ss"].append(_timed(["ss", "-tan"], stdout=devnull)[0])
            times["cat"].append(_timed(["cat", "/proc/net/tcp", "/proc/net/tcp6"], stdout=devnull)[0])
            wall, fast = _python_child(CHILD_FAST)
            times["nd"].append(float(fast["seconds"]))  # type: ignore[arg-type]
            times["nd_wall"].append(wall)
            hwm["nd"].append(int(fast["vmhwm_kb"]))  # type: ignore[call-overload]
            sockets = int(fast["sockets"])  # type: ignore[call-overload]
            for key, code in (("nd_seq", CHILD_SEQUENTIAL), ("nd_full", CHILD_FULL)):
                _wall, result = _python_child(code)
                times[key].append(float(result["seconds"]))  # type: ignore[arg-type]
                hwm[key].append(int(result["vmhwm_kb"]))  # type: ignore[call-overload]
    groups = {tuple(g[:4]): g[4] for g in fast["groups"]}  # type: ignore[union-attr]
    expected = ss_groups()
    return {
        "sockets": sockets,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "all_s": times,
        "peak_rss_mb": {k: max(v) / 1024 for k, v in hwm.items()},
        "loadavg": os.getloadavg()[0],
        "matches_ss": {str(k): v for k, v in groups.items()} == {str(k): v for k, v in expected.items()},
    }


def build_and_measure(args: argparse.Namespace) -> dict[str, object]:
    with NetnsLab(tag="sock") as lab:
        dests = [f"{ip}:{port}" for ip in lab.server_ips for port in (5001, 5002)]
        v6_dest = f"[{lab.server_ip6}]:5001"
        tw_dest = f"{lab.server_ips[0]}:6000"
        listen_args = [arg for dest in [*dests, v6_dest] for arg in ("--listen", dest)]
        lab.spawn(lab.server_ns, "serve", *listen_args, "--accept-and-close", tw_dest)
        started = time.perf_counter()
        dest_args = [arg for dest in dests for arg in ("--dest", dest)]
        holders = [
            lab.spawn(lab.client_ns, "hold-clients", *dest_args, "--count", str(args.per_client), wait=False)
            for _ in range(args.clients)
        ]
        holders.append(lab.spawn(lab.client_ns, "hold-clients", "--dest", v6_dest, "--count", str(args.v6),
                                 wait=False))  # fmt: skip
        holders.append(lab.spawn(lab.client_ns, "hold-clients", "--dest", tw_dest, "--count",
                                 str(args.time_wait), "--close-first", wait=False))  # fmt: skip
        lab.wait_ready(holders)
        time.sleep(1.0)  # let the last FIN/ACKs settle into TIME_WAIT
        print(f"sockets built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        done = subprocess.run(
            ["ip", "netns", "exec", lab.client_ns, sys.executable, __file__, "--measure", "--rounds",
             str(args.rounds)],
            check=True, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        return json.loads(done.stdout)


def markdown(result: dict[str, object], args: argparse.Namespace) -> str:
    med: dict[str, float] = result["median_s"]  # type: ignore[assignment]
    rss: dict[str, float] = result["peak_rss_mb"]  # type: ignore[assignment]
    ss = med["ss"]
    low = {key: min(values) for key, values in result["all_s"].items()}  # type: ignore[union-attr]
    uname = os.uname()
    lines = [
        "## Socket inventory",
        "",
        "Reading the TCP socket inventory of a network namespace and grouping it by (local ip, remote ip,",
        "remote port, state), against `ss -tan >/dev/null` in the same run (median of "
        f"{args.rounds} interleaved rounds; kernel {uname.release}, {os.cpu_count()} CPUs; load average "
        f"{result['loadavg']:.1f} when measuring).",
        "",
        "Reproduce (root): `python3 bench/sockets_bench.py --results bench/RESULTS.md`",
        "",
        "| sockets | ss -tan s | cat s | netdoctor s | ratio | peak RSS |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {result['sockets']} | {ss:.3f} | {med['cat']:.3f} | {med['nd']:.3f} | {med['nd'] / ss:.2f} "
        f"| {rss['nd']:.1f} MB |",
        "",
        f"Fastest round of each: ss {low['ss']:.3f} s, cat {low['cat']:.3f} s, netdoctor {low['nd']:.3f} s "
        f"(ratio of minimums {low['nd'] / low['ss']:.2f}).",
        "",
        "netdoctor = `netdoctor.sources.owners.read_destination_state_counts()` timed inside a fresh Python",
        "process (peak RSS = that process's VmHWM, interpreter included). For reference:",
        "",
        "| variant | s | ratio to ss | peak RSS |",
        "| --- | --- | --- | --- |",
        f"| fresh process wall time incl. interpreter start + import | {med['nd_wall']:.3f} | "
        f"{med['nd_wall'] / ss:.2f} | {rss['nd']:.1f} MB |",
        f"| sequential: read both files, then `group_by_destination_and_state` | {med['nd_seq']:.3f} | "
        f"{med['nd_seq'] / ss:.2f} | {rss['nd_seq']:.1f} MB |",
        f"| full `parse_socket_table` + `merge` + `destination_usage` | {med['nd_full']:.3f} | "
        f"{med['nd_full'] / ss:.2f} | {rss['nd_full']:.1f} MB |",
        "",
        f"Groups identical to `ss -tan`'s: {'yes' if result['matches_ss'] else 'NO'}.",
        "",
        "Notes:",
        "",
        "- The floor is the kernel: `cat` of the two files costs about what `ss -tan` costs in total (text",
        "  formatting of every socket, and both files walk the whole established hash, all namespaces).",
        "  Any reader that parses *after* reading lands at cat + parse (the sequential row), over budget.",
        "- seq_file returns at most one page (~4 KiB) per read() on this kernel whatever the buffer size;",
        "  1 MiB `os.read` buffers were slower (an allocation per call), not faster. 64 KiB is used.",
        "- So the fast path overlaps: `tcp` and `tcp6` are each streamed by a `cat` child (formatting runs",
        "  on the other CPU, no GIL), and the pipes are counted chunk by chunk with one regex `findall` +",
        "  `Counter` per chunk, hex keys converted to text once per distinct key. Without `cat` or on one",
        "  CPU it reads both files in threads, then counts (the sequential cost).",
        "- Rounds are noisy on this 2-CPU machine (other work runs alongside); the ratio is a median of",
        "  interleaved rounds, and the netdoctor path needs two CPUs' worth of time in the same wall time,",
        "  so it suffers more from a busy neighbour than single-threaded `ss`.",
        "- Not tried: sock_diag netlink parsed in Python (`ss`'s source of data; the kernel side is cheaper",
        "  than text formatting, but per-message Python parsing at this size is what made pyroute2 12 s).",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace (or append) the "## Socket inventory" section, keeping every other section as it is."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start = text.find("## Socket inventory")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section.rstrip("\n") + "\n" + (text[end:] if end != -1 else "")
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=6, help="client processes holding ESTABLISHED sockets")
    parser.add_argument("--per-client", type=int, default=19000, help="connections per client (< 20,000 fds)")
    parser.add_argument("--v6", type=int, default=3000, help="IPv6 connections (one more process)")
    parser.add_argument("--time-wait", type=int, default=20000, help="client-side TIME_WAIT sockets")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--results", type=Path, help="rewrite this file's 'Socket inventory' section")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.rounds)))
        return
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    install_signal_cleanup()
    result = build_and_measure(args)
    section = markdown(result, args)
    print(section)
    print(json.dumps(result["all_s"]), file=sys.stderr)
    if args.results:
        write_section(args.results, section)


if __name__ == "__main__":
    main()
