"""The one writer every fix goes through, rooted at `--root`.

Each change knows how to read its current value, write its new one, read it back,
and undo itself, so that a plan can be shown as a diff, applied, verified, journaled
and rolled back byte for byte. Kernel values (sysctls, sysfs, /proc/irq) are written
in place, as the kernel requires; persisted files are written atomically (temp file,
fsync, rename), so an interruption leaves the old file or the new one, never half.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any

from netdoctor.errors import NetdoctorError

# Kinds of change.
KERNEL = "kernel"  # a /proc/sys, /sys or /proc/irq value, written in place
FILE = "file"  # a whole file (sysctl.d, modprobe.d, udev rule), written atomically; before None = absent
ETHTOOL = "ethtool"  # NIC channels or rings: target "IFACE:channels" / "IFACE:rings", values as JSON
SERVICE = "service"  # a systemd unit's state, "active" / "inactive" (live host only)


class FixFailed(NetdoctorError):
    """Applying or verifying a change failed (the runner rolls back what was applied)."""

    exit_code = 5


class CannotRead(FixFailed):
    """The current value could not be read. While planning nothing was written: exit 3
    ("could not run"); during an apply the runner turns it into a FixFailed (exit 5)."""

    exit_code = 3


@dataclass
class Change:
    kind: str
    target: str  # path relative to the root, or "IFACE:channels"/"IFACE:rings" for ethtool
    after: str
    before: str | None = None  # filled by Writer.read_before; None for a file means "did not exist"
    why: str = ""
    # Directories the write of a FILE had to create (relative, deepest last), so that undoing
    # it removes them too and the tree is byte for byte what it was, its directory list included.
    created_dirs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "after": self.after,
            "before": self.before,
            "why": self.why,
            "created_dirs": list(self.created_dirs),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        change = cls(**{k: data[k] for k in ("kind", "target", "after", "before", "why")})
        change.created_dirs = list(data.get("created_dirs") or [])
        return change


def normalise(text: str | None) -> str | None:
    """Kernel files print whitespace freely ("32768\\t60999\\n"): compare word by word."""
    return None if text is None else " ".join(text.split())


def _mask_value(text: str) -> int:
    """A CPU bitmap as the kernel prints it ("3", "00000003", "ff,ffffffff") -> its integer."""
    return int(text.replace(",", "").strip() or "0", 16)


def _cpu_list_value(text: str) -> frozenset[int]:
    """A CPU list ("0-2,5") -> its set; the kernel prints "0-1" for what was written as "0,1"."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return frozenset(cpus)


def kernel_equal(target: str, first: str | None, second: str | None) -> bool:
    """Whether two readings of the kernel file `target` mean the same value.

    Whitespace is free everywhere; CPU bitmaps (rps_cpus, smp_affinity) are printed with
    as many hex digits as the machine has CPUs ("3" reads back after "00000003" was
    written), and CPU lists may come back as ranges: those compare by value.
    """
    if first is None or second is None:
        return first == second
    name = target.rsplit("/", 1)[-1]
    try:
        if name in ("rps_cpus", "xps_cpus", "smp_affinity", "rps_default_mask"):
            return _mask_value(first) == _mask_value(second)
        if name in ("smp_affinity_list", "effective_affinity_list"):
            return _cpu_list_value(first) == _cpu_list_value(second)
    except ValueError:
        pass
    return normalise(first) == normalise(second)


class Writer:
    def __init__(self, root: str = "/") -> None:
        self.root = os.path.abspath(root)
        self.live = self.root == "/"

    def path(self, rel: str) -> str:
        rel = rel.lstrip("/")
        full = os.path.normpath(os.path.join(self.root, rel))
        if full != self.root and not full.startswith(self.root.rstrip("/") + "/"):
            raise FixFailed(f"refusing to touch {rel}: outside {self.root}")
        return full

    # --- reading -------------------------------------------------------------------------
    def read(self, change: Change) -> str | None:
        if change.kind == ETHTOOL:
            return self._read_ethtool(change.target)
        if change.kind == SERVICE:
            return self._systemctl("is-active", change.target, check=False)
        path = self.path(change.target)
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            if change.kind == KERNEL:
                raise CannotRead(
                    f"cannot read /{change.target}: no such file (this kernel or network namespace does not have it)"
                ) from None
            return None
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise CannotRead(f"cannot read /{change.target}: {why}") from exc
        return text  # raw, so a rollback restores it byte for byte; comparisons normalise

    def read_before(self, change: Change) -> Change:
        change.before = self.read(change)
        return change

    def is_noop(self, change: Change) -> bool:
        if change.kind == FILE:
            return change.before == change.after
        if change.kind == ETHTOOL:
            return json_subset(change.after, change.before)
        return kernel_equal(change.target, change.before, change.after)

    # --- writing -------------------------------------------------------------------------
    def write(self, change: Change, value: str | None) -> None:
        """Set `change.target` to `value` (None: remove a file that did not exist before).

        Writing a FILE records the directories it had to create in `change.created_dirs`;
        writing None (the undo of a new file) removes them again when they are empty.
        """
        if change.kind == ETHTOOL:
            self._write_ethtool(change.target, value or "{}")
        elif change.kind == SERVICE:
            self._systemctl("start" if value == "active" else "stop", change.target, check=True)
        elif change.kind == FILE:
            if value is None:
                self._remove_file(change.target, change.created_dirs)
            else:
                created = self._write_file(change.target, value)
                if created:
                    change.created_dirs = created
        else:
            path = self.path(change.target)
            try:
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(value or "")
            except OSError as exc:
                raise FixFailed(f"cannot write /{change.target}: {exc.strerror or exc}") from exc

    def verify(self, change: Change) -> None:
        now = self.read(change)
        if change.kind == FILE:
            ok = now == change.after
        elif change.kind == ETHTOOL:
            ok = json_subset(change.after, now)
        else:
            ok = kernel_equal(change.target, now, change.after)
        if not ok:
            raise FixFailed(
                f"/{change.target} reads {normalise(now)!r} after writing {normalise(change.after)!r} "
                "(the kernel refused or clamped the value, or something changed it back)"
            )

    def _systemctl(self, verb: str, unit: str, *, check: bool) -> str:
        if not self.live:
            raise FixFailed(f"cannot {verb} {unit}: services are managed on the live host only")
        try:
            done = subprocess.run(["systemctl", verb, unit], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FixFailed(f"systemctl {verb} {unit}: {exc}") from exc
        if check and done.returncode != 0:
            raise FixFailed(f"systemctl {verb} {unit}: {done.stderr.strip() or done.returncode}")
        return done.stdout.strip() or "inactive"

    def _missing_dirs(self, directory: str) -> list[str]:
        """The ancestors of `directory` (itself included) that do not exist, outermost first."""
        missing: list[str] = []
        while directory != self.root and not os.path.lexists(directory):
            missing.append(directory)
            directory = os.path.dirname(directory)
        return [os.path.relpath(d, self.root) for d in reversed(missing)]

    def _remove_file(self, rel: str, created_dirs: list[str]) -> None:
        path = self.path(rel)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise FixFailed(f"cannot remove /{rel}: {exc.strerror or exc}") from exc
        for directory in reversed(created_dirs):  # deepest first; a directory now used by others stays
            try:
                os.rmdir(self.path(directory))
            except OSError:
                break

    def _write_file(self, rel: str, content: str) -> list[str]:
        """Write atomically; keep an existing file's mode and owner. Returns the directories created."""
        path = self.path(rel)
        directory = os.path.dirname(path)
        created = self._missing_dirs(directory)
        try:
            old = os.stat(path)
        except FileNotFoundError:
            old = None
        except OSError as exc:
            raise FixFailed(f"cannot write /{rel}: {exc.strerror or exc}") from exc
        tmp: str | None = None
        try:
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".netdoctor-")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            if old is not None and stat.S_ISREG(old.st_mode):
                os.chmod(tmp, stat.S_IMODE(old.st_mode))
                os.chown(tmp, old.st_uid, old.st_gid)
            else:
                os.chmod(tmp, 0o644)
            os.rename(tmp, path)
            tmp = None
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            if tmp is not None and os.path.lexists(tmp):
                os.unlink(tmp)
            for made in reversed(created):
                try:
                    os.rmdir(self.path(made))
                except OSError:
                    break
            raise FixFailed(f"cannot write /{rel}: {exc.strerror or exc}") from exc
        return created

    # --- ethtool: the binary on the live host, the capture's pseudo-file under other roots ---
    def _ethtool_file(self, iface: str) -> str:
        return self.path(f".netdoctor/ethtool/{iface}.json")

    def _read_ethtool(self, target: str) -> str | None:
        iface, _, what = target.partition(":")
        if self.live:
            from netdoctor.sources.ethtool import query_ethtool

            answer, error = query_ethtool(iface)
            if answer is None or answer.get(what) is None:
                raise CannotRead(f"cannot read {what} of {iface}: {error or 'not supported by the driver'}")
            return json.dumps(answer[what], sort_keys=True)
        try:
            with open(self._ethtool_file(iface), encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            raise CannotRead(f"no NIC {iface} under {self.root} (no .netdoctor/ethtool/{iface}.json)") from None
        except (OSError, ValueError) as exc:
            raise CannotRead(f"cannot read {what} of {iface} under {self.root}: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get(what), dict):
            raise CannotRead(f"{iface} reports no {what} (the driver does not support changing them)")
        return json.dumps(data[what], sort_keys=True)

    def _write_ethtool(self, target: str, value: str) -> None:
        iface, _, what = target.partition(":")
        wanted: dict[str, int] = json.loads(value)
        if self.live:
            binary = shutil.which("ethtool") or shutil.which("ethtool", path="/usr/sbin:/sbin")
            if binary is None:
                raise FixFailed("ethtool is not installed")
            flag = "-L" if what == "channels" else "-G"
            settable = {k: v for k, v in wanted.items() if not k.startswith("max_") and not k.endswith("_max")}
            args = [binary, flag, iface]
            for key, number in sorted(settable.items()):
                args += [key.replace("_", "-"), str(number)]
            try:
                done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise FixFailed(f"{' '.join(args[1:])}: {exc}") from exc
            # ethtool exits 80 when "no change" (already set): not a failure.
            if done.returncode not in (0, 80):
                raise FixFailed(f"{' '.join(args[1:])}: {done.stderr.strip() or done.returncode}")
            return
        path = self._ethtool_file(iface)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise FixFailed(f"cannot read {path}: {exc}") from exc
        current = data.get(what) or {}
        for key, number in wanted.items():  # refuse what a driver would refuse: beyond its maximum
            maximum = current.get(f"max_{key}", current.get(f"{key}_max"))
            if not key.startswith("max_") and not key.endswith("_max") and maximum is not None and number > maximum:
                raise FixFailed(f"{iface}: {what} {key} {number} exceeds the maximum {maximum}")
        data[what] = {**current, **wanted}
        self._write_file(os.path.relpath(path, self.root), json.dumps(data, sort_keys=True))


def json_subset(wanted_text: str | None, actual_text: str | None) -> bool:
    """Every key asked for has that value now (ethtool answers carry more keys, e.g. maxima)."""
    if wanted_text is None or actual_text is None:
        return wanted_text == actual_text
    wanted, actual = json.loads(wanted_text), json.loads(actual_text)
    return all(actual.get(key) == value for key, value in wanted.items())
