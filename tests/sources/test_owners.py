"""Tests for socket owner lookup (inode -> pid, comm) and the streamed read of the socket tables."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from netdoctor.sources.owners import _stream_with_cat, _stream_with_threads, find_socket_owners, stream_files
from netdoctor.sources.parsers.sockets import parse_socket_table
from netdoctor.sources.reader import RawSample, Reader
from tests.conftest import require_binary

Streamer = Callable[[Sequence[int], Sequence[Callable[[bytes], None]]], list[OSError | None]]


def cat_streamer(fds: Sequence[int], sinks: Sequence[Callable[[bytes], None]]) -> list[OSError | None]:
    require_binary("cat")
    return _stream_with_cat("cat", fds, sinks)


STREAMERS = [pytest.param(cat_streamer, id="cat"), pytest.param(_stream_with_threads, id="threads")]


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


@pytest.mark.parametrize("streamer", STREAMERS)
def test_streaming_hands_over_every_byte_of_each_file_in_order(tmp_path: Path, streamer: Streamer) -> None:
    contents = [b"", b"one line\n", bytes(range(256)) * 12_000]  # empty, small, 3 MB (many pipe reads)
    fds = []
    for number, content in enumerate(contents):
        (tmp_path / str(number)).write_bytes(content)
        fds.append(os.open(tmp_path / str(number), os.O_RDONLY))
    received: list[list[bytes]] = [[] for _ in contents]
    try:
        failures = streamer(fds, [into.append for into in received])
    finally:
        for fd in fds:
            os.close(fd)
    assert failures == [None, None, None]
    assert [b"".join(chunks) for chunks in received] == contents
    assert len(received[2]) > 1  # really chunked


@pytest.mark.parametrize("streamer", STREAMERS)
def test_streaming_reports_a_descriptor_that_cannot_be_read(tmp_path: Path, streamer: Streamer) -> None:
    (tmp_path / "file").write_bytes(b"fine\n")
    fds = [os.open(tmp_path, os.O_RDONLY), os.open(tmp_path / "file", os.O_RDONLY)]  # a directory: EISDIR
    received: list[list[bytes]] = [[], []]
    try:
        failures = streamer(fds, [into.append for into in received])
    finally:
        for fd in fds:
            os.close(fd)
    assert isinstance(failures[0], OSError) and failures[1] is None
    assert received == [[], [b"fine\n"]]
    assert stream_files([], []) == []


def test_reader_streams_this_hosts_socket_tables_into_text_and_tables() -> None:
    """The live read keeps each file's exact text and the table that text parses to (held listener visible)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    try:
        sample = RawSample()
        Reader("/").read_sockets(sample)
    finally:
        listener.close()
    for rel, proto, family in (("proc/net/tcp", "tcp", 4), ("proc/net/udp", "udp", 4)):
        assert parse_socket_table(sample.files[rel], proto, family) == sample.parsed[rel]
    assert [s.local_port for s in sample.parsed["proc/net/tcp"].listeners() if s.local_port == port] == [port]


def test_reader_keeps_the_text_of_a_socket_file_that_does_not_parse(tmp_path: Path) -> None:
    """A capture with a damaged table: the text is kept (the collector reports where it fails), no table."""
    net = tmp_path / "proc" / "net"
    net.mkdir(parents=True)
    (net / "tcp").write_text("not a socket table\n")
    good = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (net / "udp").write_text(good)
    sample = RawSample()
    Reader(str(tmp_path), live_extras=False).read_sockets(sample)
    assert sample.files["proc/net/tcp"] == "not a socket table\n"
    assert "proc/net/tcp" not in sample.parsed
    assert len(sample.parsed["proc/net/udp"]) == 0
    assert sample.errors["proc/net/tcp6"] == "IPv6 is disabled on this host"
