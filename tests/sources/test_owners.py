"""Tests for socket owner lookup (inode -> pid, comm) and the live TCP grouping read."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

from netdoctor.sources.owners import _counts_with_threads, find_socket_owners, read_destination_state_counts
from netdoctor.sources.parsers.sockets import SocketTable, parse_socket_table


def make_process(proc: Path, pid: int, comm: str | None, links: dict[str, str]) -> None:
    """A fake /proc/<pid> with fd symlinks (dangling targets, as readlink sees them) and a comm file."""
    fd_dir = proc / str(pid) / "fd"
    fd_dir.mkdir(parents=True)
    for fd, target in links.items():
        os.symlink(target, fd_dir / fd)
    if comm is not None:
        (proc / str(pid) / "comm").write_text(comm + "\n")


def test_owners_from_a_proc_tree(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    make_process(proc, 101, "nginx", {"0": "/dev/null", "3": "socket:[5001]", "4": "socket:[5002]"})
    make_process(proc, 202, "java", {"7": "socket:[7007]", "8": "pipe:[9]", "9": "anon_inode:[eventfd]"})
    make_process(proc, 303, None, {"3": "socket:[8008]"})  # exited before its comm was read
    (proc / "404").mkdir()  # vanished: no fd directory any more
    (proc / "self").mkdir()
    (proc / "net").mkdir()

    owners = find_socket_owners(str(proc), {5002, 7007, 8008, 0, 123456})
    assert owners == {5002: (101, "nginx"), 7007: (202, "java"), 8008: (303, "")}


def test_nothing_wanted_or_no_proc_gives_an_empty_answer(tmp_path: Path) -> None:
    assert find_socket_owners(str(tmp_path), {0}) == {}
    assert find_socket_owners(str(tmp_path / "missing"), {42}) == {}


def test_owner_of_a_real_socket_in_this_process_and_in_a_child() -> None:
    mine = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    child = subprocess.Popen(
        [sys.executable, "-c", "import socket,sys; s=socket.socket(); print(__import__('os').fstat("
         "s.fileno()).st_ino, flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        child_inode = int(child.stdout.readline())
        my_inode = os.fstat(mine.fileno()).st_ino
        owners = find_socket_owners("/proc", {my_inode, child_inode})
        my_comm = Path("/proc/self/comm").read_text().strip()
        assert owners[my_inode] == (os.getpid(), my_comm)
        assert owners[child_inode][0] == child.pid
        assert owners[child_inode][1].startswith("python")
    finally:
        child.kill()
        child.wait()
        mine.close()


def test_live_grouping_of_this_namespace_matches_the_parsed_table() -> None:
    """Both live readers agree with parse_socket_table on the same files (sockets that come and go between
    reads on a busy host are the only expected difference, so hold one listener and compare its group)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    try:
        fast = read_destination_state_counts()
        threaded = _counts_with_threads(["/proc/net/tcp", "/proc/net/tcp6"])
        table = SocketTable.merge(
            [
                parse_socket_table(Path("/proc/net/tcp").read_text(), "tcp", 4),
                parse_socket_table(Path("/proc/net/tcp6").read_text(), "tcp", 6),
            ]
        )
        expected = Counter((s.local_ip, s.remote_ip, s.remote_port, s.state) for s in table)
        key = ("127.0.0.1", "0.0.0.0", 0, "LISTEN")
        assert fast[key] == threaded[key] == expected[key] >= 1
        assert any(s.local_port == port for s in table.listeners())
    finally:
        listener.close()
