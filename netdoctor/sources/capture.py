"""Captures: both samples of every file the live source read, written as a tree or a .tar.gz.

Layout (also the layout of tests/fixtures/proc/<scenario>/, so a user's capture from
a real incident becomes a test fixture by copying it in):

    meta.json                      {"format": 1, "interval_s", "kernel", "hostname", "taken_at", "netdoctor"}
    sample1/proc/..., sample1/sys/class/net/<nic>/...   the first read
    sample2/...                                          the second read (+ socket tables)
    sampleN/.netdoctor/errors.json                      files that could not be read, and why
    sample2/.netdoctor/ethtool/<nic>.json               channels and rings
    sample2/.netdoctor/socket_owners.json               inode -> [pid, comm]
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from netdoctor import __version__
from netdoctor.errors import SourceError
from netdoctor.sources.collect import build_view
from netdoctor.sources.reader import ERRORS_FILE, RawSample, Reader
from netdoctor.view import SampleView

FORMAT = 1
SAMPLES = ("sample1", "sample2")
# A capture is small (tens of MB with 100k sockets); refuse absurd members from a hostile tarball.
MAX_MEMBER_BYTES = 512 << 20


def _sample_files(raw: RawSample) -> dict[str, bytes]:
    files = {rel: text.encode() for rel, text in raw.files.items()}
    if "sys/class/net" not in raw.errors:
        files[LISTED_MARKER] = b""
    if raw.errors:
        files[ERRORS_FILE] = json.dumps(raw.errors, sort_keys=True, indent=1).encode()
    return files


# Marks "the NIC listing worked" in a capture with no physical NIC (an empty dir would be lost in git).
LISTED_MARKER = "sys/class/net/.netdoctor-listed"


DEVICE_MARKER = ".netdoctor-device"


def _device_dirs(raw: RawSample) -> set[str]:
    """Physical NICs are recognised by their `device` dir: keep it even when nothing in it was read."""
    dirs = set()
    for rel in raw.files:
        parts = rel.split("/")
        if rel.startswith("sys/class/net/") and len(parts) > 4:
            dirs.add("/".join(parts[:4]) + "/device")
    return dirs


def write_capture(path: str | Path, first: RawSample, second: RawSample, meta: dict[str, Any]) -> Path:
    """Write a .tar.gz (when the name ends so) or a directory; atomically, so no half capture is left."""
    path = Path(path)
    meta = {"format": FORMAT, "netdoctor": __version__, **meta}
    entries: dict[str, bytes] = {"meta.json": json.dumps(meta, sort_keys=True, indent=1).encode()}
    dirs: set[str] = set()
    for name, raw in zip(SAMPLES, (first, second), strict=True):
        for rel, data in _sample_files(raw).items():
            entries[f"{name}/{rel}"] = data
        for device_dir in _device_dirs(raw):
            dirs.add(f"{name}/{device_dir}")
            # A file inside, so the dir survives being committed to git as a test fixture.
            entries.setdefault(f"{name}/{device_dir}/{DEVICE_MARKER}", b"")
    if path.name.endswith((".tar.gz", ".tgz")):
        _write_tar(path, entries, dirs)
    else:
        _write_dir(path, entries, dirs)
    return path


def _write_tar(path: Path, entries: dict[str, bytes], dirs: set[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            with tarfile.open(fileobj=handle, mode="w:gz") as tar:
                for name in sorted(dirs):
                    info = tarfile.TarInfo(name)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
                for name, data in sorted(entries.items()):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    info.mode = 0o644
                    tar.addfile(info, io.BytesIO(data))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_dir(path: Path, entries: dict[str, bytes], dirs: set[str]) -> None:
    if path.exists() and any(path.iterdir()):
        raise SourceError(f"cannot write capture to {path}: directory exists and is not empty")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    for name in dirs:
        (tmp / name).mkdir(parents=True, exist_ok=True)
    for name, data in entries.items():
        target = tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if path.exists():
        path.rmdir()
    os.replace(tmp, path)


def _safe_extract(tar: tarfile.TarFile, into: Path) -> None:
    for member in tar.getmembers():
        name = member.name
        if name.startswith("/") or ".." in Path(name).parts:
            raise SourceError(f"refusing capture member {name!r}: path escapes the capture")
        if not (member.isfile() or member.isdir()):
            raise SourceError(f"refusing capture member {name!r}: not a regular file or directory")
        if member.size > MAX_MEMBER_BYTES:
            raise SourceError(f"refusing capture member {name!r}: {member.size} bytes is too large")
    tar.extractall(into, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(into)


class CaptureSource:
    """Replays a capture (a .tar.gz or a directory of the same layout) as a View."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def describe(self) -> str:
        return f"capture {self.path}"

    def view(self) -> SampleView:
        if not self.path.exists():
            raise SourceError(f"cannot read capture {self.path}: no such file or directory")
        if self.path.is_dir():
            return self._view_from_dir(self.path)
        try:
            with tempfile.TemporaryDirectory(prefix="netdoctor-capture-") as tmp:
                with tarfile.open(self.path, "r:*") as tar:
                    _safe_extract(tar, Path(tmp))
                return self._view_from_dir(Path(tmp))
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise SourceError(f"cannot read capture {self.path}: {exc}") from exc

    def _view_from_dir(self, root: Path) -> SampleView:
        meta_path = root / "meta.json"
        try:
            meta = json.loads(meta_path.read_text())
            interval_s = float(meta["interval_s"])
        except FileNotFoundError as exc:
            raise SourceError(f"{self.path} is not a netdoctor capture: no meta.json") from exc
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise SourceError(f"cannot read {self.path}/meta.json: {exc}") from exc
        if not interval_s > 0:
            raise SourceError(f"{self.path}/meta.json: interval_s must be positive, got {interval_s}")
        for name in SAMPLES:
            if not (root / name).is_dir():
                raise SourceError(f"{self.path} is not a netdoctor capture: no {name}/")
        first = Reader(str(root / "sample1"), live_extras=False).sample(sockets=False)
        second = Reader(str(root / "sample2"), live_extras=False).sample(sockets=True)
        return build_view(first, second, interval_s, source=self.describe(), meta=meta)
