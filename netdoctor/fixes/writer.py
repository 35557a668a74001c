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
import subprocess
import tempfile
from dataclasses import asdict, dataclass
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


@dataclass
class Change:
    kind: str
    target: str  # path relative to the root, or "IFACE:channels"/"IFACE:rings" for ethtool
    after: str
    before: str | None = None  # filled by Writer.read_before; None for a file means "did not exist"
    why: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        return cls(**{k: data[k] for k in ("kind", "target", "after", "before", "why")})


def normalise(text: str | None) -> str | None:
    """Kernel files print whitespace freely ("32768\\t60999\\n"): compare word by word."""
    return None if text is None else " ".join(text.split())


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
                raise FixFailed(f"cannot read /{change.target}: no such file (not supported here?)") from None
            return None
        except OSError as exc:
            raise FixFailed(f"cannot read /{change.target}: {exc.strerror or exc}") from exc
        return text  # raw, so a rollback restores it byte for byte; comparisons normalise

    def read_before(self, change: Change) -> Change:
        change.before = self.read(change)
        return change

    def is_noop(self, change: Change) -> bool:
        if change.kind == FILE:
            return change.before == change.after
        if change.kind == ETHTOOL:
            return _json_subset(change.after, change.before)
        return normalise(change.before) == normalise(change.after)

    # --- writing -------------------------------------------------------------------------
    def write(self, change: Change, value: str | None) -> None:
        """Set `change.target` to `value` (None: remove a file that did not exist before)."""
        if change.kind == ETHTOOL:
            self._write_ethtool(change.target, value or "{}")
        elif change.kind == SERVICE:
            self._systemctl("start" if value == "active" else "stop", change.target, check=True)
        elif change.kind == FILE:
            self._write_file(change.target, value)
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
            ok = _json_subset(change.after, now)
        else:
            ok = normalise(now) == normalise(change.after)
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

    def _write_file(self, rel: str, content: str | None) -> None:
        path = self.path(rel)
        if content is None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".netdoctor-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise FixFailed(f"cannot write /{rel}: {exc.strerror or exc}") from exc

    # --- ethtool: the binary on the live host, the capture's pseudo-file under other roots ---
    def _ethtool_file(self, iface: str) -> str:
        return self.path(f".netdoctor/ethtool/{iface}.json")

    def _read_ethtool(self, target: str) -> str | None:
        iface, _, what = target.partition(":")
        if self.live:
            from netdoctor.sources.ethtool import query_ethtool

            answer, error = query_ethtool(iface)
            if answer is None or answer.get(what) is None:
                raise FixFailed(f"cannot read {what} of {iface}: {error or 'not supported by the driver'}")
            return json.dumps(answer[what], sort_keys=True)
        try:
            with open(self._ethtool_file(iface), encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise FixFailed(f"cannot read {what} of {iface} under {self.root}: {exc}") from exc
        if data.get(what) is None:
            raise FixFailed(f"{iface} reports no {what} (the driver does not support changing them)")
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
            done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
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
        data[what] = {**(data.get(what) or {}), **wanted}
        self._write_file(os.path.relpath(path, self.root), json.dumps(data, sort_keys=True))


def _json_subset(wanted_text: str | None, actual_text: str | None) -> bool:
    """Every key asked for has that value now (ethtool answers carry more keys, e.g. maxima)."""
    if wanted_text is None or actual_text is None:
        return wanted_text == actual_text
    wanted, actual = json.loads(wanted_text), json.loads(actual_text)
    return all(actual.get(key) == value for key, value in wanted.items())
