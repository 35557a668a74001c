"""Live-host socket facts that need I/O: who owns a socket inode, and the bulk read of the TCP table.

Why here and not in parsers: parsers are pure (text in, values out); both functions below read /proc.

`find_socket_owners` answers "who holds these CLOSE_WAIT sockets?" by walking /proc/<pid>/fd links, and stops
as soon as every wanted inode is found: on a busy host that is often after a handful of processes.

`read_destination_state_counts` is the fast path for 100k+ sockets. Measured (bench/RESULTS.md): the
kernel's text formatting of /proc/net/tcp alone costs about what `ss -tan` costs in total, and seq_file hands
out one page per read() whatever the buffer size, so a reader that parses after reading cannot meet "1.2x ss".
Hence the read runs in parallel with the counting: each file is streamed by its own `cat` child (the kernel
formats on another CPU, no GIL involved) and the chunks are counted as they arrive from the pipes. Without
`cat` or with a single CPU it falls back to reading both files in parallel threads, then counting.
"""

from __future__ import annotations

import fcntl
import os
import selectors
import shutil
import subprocess
import threading

from netdoctor.sources.parsers.sockets import DestinationStateGrouper

READ_CHUNK = 1 << 16  # seq_file returns at most one page per read(); a bigger buffer only costs allocation
PIPE_SIZE = 1 << 20
_SOCKET_LINK_PREFIX = "socket:["


def _read_comm(proc_root: str, pid: str) -> str:
    try:
        with open(os.path.join(proc_root, pid, "comm"), encoding="utf-8", errors="replace") as comm_file:
            return comm_file.read().rstrip("\n")
    except OSError:
        return ""  # the process exited between its fd scan and now, or comm is unreadable


def find_socket_owners(proc_root: str, inodes: set[int]) -> dict[int, tuple[int, str]]:
    """inode -> (pid, comm) for the wanted socket inodes, from `<proc_root>/<pid>/fd/*` -> "socket:[INODE]".

    Processes that vanish or deny access mid-scan are skipped (their sockets stay unowned in the answer).
    Inode 0 (TIME_WAIT, request sockets) has no owner and is never looked for. When several processes share a
    socket (fork), the first pid found is reported.
    """
    wanted = {inode for inode in inodes if inode}
    owners: dict[int, tuple[int, str]] = {}
    if not wanted:
        return owners
    try:
        entries = os.scandir(proc_root)
    except OSError:
        return owners
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            fd_dir = os.path.join(proc_root, entry.name, "fd")
            try:
                fd_names = os.listdir(fd_dir)
            except OSError:  # vanished, permission denied, kernel thread
                continue
            found_here: list[int] = []
            for fd_name in fd_names:
                try:
                    target = os.readlink(os.path.join(fd_dir, fd_name))
                except OSError:
                    continue
                if not target.startswith(_SOCKET_LINK_PREFIX):
                    continue
                try:
                    inode = int(target[len(_SOCKET_LINK_PREFIX) : -1])
                except ValueError:
                    continue
                if inode in wanted and inode not in owners:
                    found_here.append(inode)
            if found_here:
                owner = (int(entry.name), _read_comm(proc_root, entry.name))
                for inode in found_here:
                    owners[inode] = owner
                if len(owners) == len(wanted):
                    break
    return owners


def _read_file_in_thread(path: str, into: dict[str, bytes | OSError]) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            parts = []
            while chunk := os.read(fd, READ_CHUNK):
                parts.append(chunk)
        finally:
            os.close(fd)
        into[path] = b"".join(parts)
    except OSError as error:
        into[path] = error


def _counts_with_threads(paths: list[str]) -> dict[tuple[str, str, int, str], int]:
    """Fallback without `cat`: read the files in parallel threads (read() releases the GIL), then count."""
    texts: dict[str, bytes | OSError] = {}
    readers = [threading.Thread(target=_read_file_in_thread, args=(path, texts)) for path in paths]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    grouper = DestinationStateGrouper()
    for path in paths:
        text = texts[path]
        if isinstance(text, OSError):
            raise text
        grouper.feed(text)
        grouper.feed(b"\n")  # a file boundary is a row boundary
    return grouper.result()


def _counts_with_cat(cat: str, paths: list[str]) -> dict[tuple[str, str, int, str], int]:
    """Stream each file through its own `cat`; count chunks as they arrive."""
    readers = [subprocess.Popen([cat, path], stdout=subprocess.PIPE, bufsize=0) for path in paths]
    try:
        groupers: dict[int, DestinationStateGrouper] = {}
        with selectors.DefaultSelector() as selector:
            for reader in readers:
                assert reader.stdout is not None
                pipe = reader.stdout.fileno()
                try:
                    fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, PIPE_SIZE)  # fewer, larger reads on our side
                except OSError:
                    pass
                selector.register(pipe, selectors.EVENT_READ)
                groupers[pipe] = DestinationStateGrouper()
            while selector.get_map():
                for key, _events in selector.select():
                    chunk = os.read(key.fd, PIPE_SIZE)
                    if chunk:
                        groupers[key.fd].feed(chunk)
                    else:
                        selector.unregister(key.fd)
        for reader, path in zip(readers, paths, strict=True):
            if reader.wait() != 0:
                raise OSError(f"cannot read {path}: cat exited with {reader.returncode}")
    finally:
        for reader in readers:
            if reader.poll() is None:
                reader.kill()
                reader.wait()
            if reader.stdout is not None:
                reader.stdout.close()
    counts: dict[tuple[str, str, int, str], int] = {}
    for grouper in groupers.values():
        for key, count in grouper.result().items():
            counts[key] = counts.get(key, 0) + count
    return counts


def read_destination_state_counts(proc_net_dir: str = "/proc/net") -> dict[tuple[str, str, int, str], int]:
    """(local ip, remote ip, remote port, state) -> count over the TCP sockets of this network namespace.

    Same answer as `group_by_destination_and_state` on the text of `tcp` and `tcp6`. Raises OSError when the
    files cannot be read. `proc_net_dir` may be another process's `/proc/<pid>/net` (its namespace).
    """
    paths = [os.path.join(proc_net_dir, "tcp")]
    if os.path.exists(os.path.join(proc_net_dir, "tcp6")):  # absent when IPv6 is disabled
        paths.append(os.path.join(proc_net_dir, "tcp6"))
    cat = shutil.which("cat") or shutil.which("cat", path="/usr/bin:/bin")
    if cat is None or (os.cpu_count() or 1) < 2:
        return _counts_with_threads(paths)
    return _counts_with_cat(cat, paths)
