"""Live-host socket I/O: stream the socket tables to a parser while the kernel formats them, find owners.

Why here and not in parsers: parsers are pure (text in, values out); both jobs below touch /proc.

`stream_files` is how `Reader` reads /proc/net/{tcp,tcp6,udp,udp6}. Measured (bench/RESULTS.md): at 100k+
sockets the kernel's text formatting of /proc/net/tcp alone costs about what `ss -tan` costs in total, and
seq_file hands out one page per read() whatever the buffer size (and supports neither splice nor sendfile),
so a reader that parses after reading cannot meet "1.2x ss". Hence reading runs in parallel with parsing:
each file is streamed by its own `cat` child reading the already-open descriptor (the kernel formats on
another CPU, in another process), and the main thread parses chunks as they arrive from the pipes. Why not
threads: a reading thread needs the GIL back after every 4 KiB read(), and a parsing thread holds it for
whole C calls, so the two serialise; a child process needs no GIL. Without `cat` or with a single CPU it
reads the files in parallel threads, then hands the chunks over.

`find_socket_owners` answers "who holds these CLOSE_WAIT sockets?" by walking /proc/<pid>/fd links, and stops
as soon as every wanted inode is found: on a busy host that is often after a handful of processes.
"""

from __future__ import annotations

import fcntl
import os
import selectors
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence

READ_CHUNK = 1 << 16  # seq_file returns at most one page per read(); a bigger buffer only costs allocation
PIPE_SIZE = 1 << 20
_SOCKET_LINK_PREFIX = "socket:["

Sink = Callable[[bytes], None]


def _read_fd_in_thread(fd: int, into: list[bytes], errors: dict[int, OSError]) -> None:
    try:
        while chunk := os.read(fd, READ_CHUNK):
            into.append(chunk)
    except OSError as error:
        errors[fd] = error


def _stream_with_threads(fds: Sequence[int], sinks: Sequence[Sink]) -> list[OSError | None]:
    """Fallback without `cat` or a second CPU: read all files in parallel threads, then feed the sinks."""
    chunks: list[list[bytes]] = [[] for _ in fds]
    errors: dict[int, OSError] = {}
    readers = [
        threading.Thread(target=_read_fd_in_thread, args=(fd, into, errors))
        for fd, into in zip(fds, chunks, strict=True)
    ]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    for fd_chunks, sink in zip(chunks, sinks, strict=True):
        for chunk in fd_chunks:
            sink(chunk)
    return [errors.get(fd) for fd in fds]


def _stream_with_cat(cat: str, fds: Sequence[int], sinks: Sequence[Sink]) -> list[OSError | None]:
    """One `cat` child per descriptor (its stdin); chunks go to the sinks as they arrive from the pipes."""
    children = [subprocess.Popen([cat], stdin=fd, stdout=subprocess.PIPE, bufsize=0) for fd in fds]
    results: list[OSError | None] = [None] * len(fds)
    try:
        with selectors.DefaultSelector() as selector:
            for number, child in enumerate(children):
                assert child.stdout is not None
                pipe = child.stdout.fileno()
                try:
                    fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, PIPE_SIZE)  # fewer, larger reads on our side
                except OSError:
                    pass
                selector.register(pipe, selectors.EVENT_READ, number)
            while selector.get_map():
                for key, _events in selector.select():
                    chunk = os.read(key.fd, PIPE_SIZE)
                    if chunk:
                        sinks[key.data](chunk)
                    else:
                        selector.unregister(key.fd)
        for number, child in enumerate(children):
            if child.wait() != 0:
                results[number] = OSError(f"read failed (cat exited with status {child.returncode})")
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
    return results


def stream_files(fds: Sequence[int], sinks: Sequence[Sink]) -> list[OSError | None]:
    """Read each open descriptor to its end, passing every chunk to its sink as soon as it is read.

    Returns, per descriptor, None or the OSError that cut its read short. The descriptors are left open
    (the caller opened them, so it reports open errors in its own terms, and closes them). A sink that raises
    stops the whole read; sinks that must not stop it catch their own errors.
    """
    if not fds:
        return []
    cat = shutil.which("cat") or shutil.which("cat", path="/usr/bin:/bin")
    if cat is None or len(os.sched_getaffinity(0)) < 2:  # one usable CPU: nothing to overlap with
        return _stream_with_threads(fds, sinks)
    return _stream_with_cat(cat, fds, sinks)


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
