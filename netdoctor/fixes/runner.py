"""Every fix, the same way: plan -> diff -> preconditions -> apply -> verify -> persist -> journal.

A failure part-way rolls back what was already applied, in reverse order. Two fixes
never run at once (a lock under the root). The journal lets `netdoctor fix
--rollback [ID]` restore the previous values and files byte for byte.

Exit codes of `netdoctor fix` (also in the README):
    0  applied and verified, or nothing to change, or a dry run whose plans would all be allowed
    3  could not run (bad flags, a value that cannot be read, no such NIC), nothing written
    4  refused: not root, an unsafe value, irqbalance would undo it, another fix running;
       nothing written (a dry run of a plan that would be refused also exits 4)
    5  failed part-way and rolled back: nothing changed
    6  failed and the rollback itself failed: the journal entry says what to restore by hand

Where the journal and the lock live: `<root>/var/lib/netdoctor/journal.jsonl` and
`<root>/run/netdoctor-fix.lock`, or, when the environment variable NETDOCTOR_STATE_DIR is
set, `$NETDOCTOR_STATE_DIR/journal.jsonl` and `$NETDOCTOR_STATE_DIR/fix.lock`. Each entry
records its root, and only entries of the same root are rolled back, so one state
directory can serve several roots (tests; fixes run inside network namespaces, whose
/var/lib is the host's).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from netdoctor.errors import NetdoctorError
from netdoctor.fixes.writer import ETHTOOL, FILE, Change, FixFailed, Writer, json_subset, kernel_equal, normalise

LOCK_FILE = "run/netdoctor-fix.lock"
JOURNAL_FILE = "var/lib/netdoctor/journal.jsonl"
STATE_DIR_ENV = "NETDOCTOR_STATE_DIR"


def state_paths(writer: Writer) -> tuple[str, str]:
    """(journal, lock) paths: under the root, or under $NETDOCTOR_STATE_DIR when set."""
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        base = os.path.abspath(override)
        return os.path.join(base, "journal.jsonl"), os.path.join(base, "fix.lock")
    return writer.path(JOURNAL_FILE), writer.path(LOCK_FILE)


class FixRefused(NetdoctorError):
    exit_code = 4


class RollbackFailed(NetdoctorError):
    exit_code = 6


@dataclass
class Plan:
    fix_id: str
    summary: str
    changes: list[Change]
    refusals: list[str] = field(default_factory=list)  # preconditions that failed: nothing may be written
    notes: list[str] = field(default_factory=list)


def diff(plan: Plan) -> str:
    """Before -> after, one block per change; files as unified diffs."""
    import difflib

    lines = [f"# {plan.fix_id}: {plan.summary}"]
    for change in plan.changes:
        if change.kind == FILE:
            if change.before == change.after:
                lines.append(f"= /{change.target} (already as wanted)")
                continue
            before = (change.before or "").splitlines(keepends=True)
            after = change.after.splitlines(keepends=True)
            lines.extend(
                line.rstrip("\n")
                for line in difflib.unified_diff(
                    before,
                    after,
                    fromfile="/dev/null" if change.before is None else f"a/{change.target}",
                    tofile=f"b/{change.target}",
                )
            )
        elif change.kind == ETHTOOL:
            wanted = json.loads(change.after)
            current = json.loads(change.before) if change.before else {}
            shown = {key: current.get(key) for key in wanted}
            mark = "=" if json_subset(change.after, change.before) else "~"
            lines.append(
                f"{mark} {change.target}: {json.dumps(shown, sort_keys=True)} -> {json.dumps(wanted, sort_keys=True)}"
                + (f"   ({change.why})" if change.why else "")
            )
        else:
            mark = "=" if kernel_equal(change.target, change.before, change.after) else "~"
            lines.append(
                f"{mark} /{change.target}: {normalise(change.before)} -> {normalise(change.after)}"
                + (f"   ({change.why})" if change.why else "")
            )
    for note in plan.notes:
        lines.append(f"# note: {note}")
    for refusal in plan.refusals:
        lines.append(f"# REFUSED: {refusal}")
    return "\n".join(lines) + "\n"


@contextmanager
def fix_lock(writer: Writer) -> Iterator[None]:
    """Hold the one fix lock (flock, released by the kernel if the holder dies) or refuse."""
    path = state_paths(writer)[1]
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise FixRefused(f"cannot take the fix lock {path}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise FixRefused(f"another netdoctor fix is running (pid {holder}); try again when it ends") from exc
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


class Journal:
    """Append-only JSON lines under the root: one entry per applied fix, one per rollback."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.path = state_paths(writer)[0]

    def entries(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                lines = handle.readlines()
        except FileNotFoundError:
            return []
        entries = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except ValueError:
                # A torn last line (power cut mid-append) must not hide the entries before it.
                if number != len(lines):
                    raise NetdoctorError(f"journal {self.path} line {number} is corrupt") from None
        return entries

    def open(self) -> int:
        """An append descriptor, opened before any change so a journal that cannot be written
        stops the fix before it starts, not after it changed things it could not record."""
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise FixRefused(f"cannot open the journal {self.path}: {exc.strerror or exc}") from exc

    def append(self, entry: dict[str, Any], fd: int | None = None) -> None:
        own = fd is None
        fd = self.open() if fd is None else fd
        try:
            os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            if own:
                os.close(fd)

    def for_root(self) -> list[dict[str, Any]]:
        """Entries about this writer's root (a shared NETDOCTOR_STATE_DIR holds several roots)."""
        return [e for e in self.entries() if e.get("root", self.writer.root) == self.writer.root]

    def applied_not_rolled_back(self) -> list[dict[str, Any]]:
        entries = self.for_root()
        undone = {e["rolls_back"] for e in entries if e.get("rolls_back")}
        return [e for e in entries if e.get("action") == "apply" and e["id"] not in undone]


def _already_before(writer: Writer, change: Change) -> bool:
    """Whether `change.target` reads as its `before` value (a write that failed changed nothing)."""
    probe = Change(change.kind, change.target, change.before if change.before is not None else "")
    try:
        now = writer.read(probe)
    except (FixFailed, OSError):
        return False
    if change.kind == FILE:
        return now == change.before
    if change.kind == ETHTOOL:
        return change.before is not None and json_subset(change.before, now)
    return kernel_equal(change.target, now, change.before)


def _undo(writer: Writer, applied: list[Change]) -> list[str]:
    """Restore `applied` in reverse order; return what could not be restored.

    A restore that fails is still a success when the target already reads as before:
    that is the change whose own write failed (e.g. EROFS) and so never took effect.
    """
    failures = []
    for change in reversed(applied):
        try:
            writer.write(change, change.before)
        except (FixFailed, OSError) as exc:
            if not _already_before(writer, change):
                failures.append(f"{change.target}: {exc}")
    return failures


def apply_plan(plan: Plan, writer: Writer, *, inject_failure_after: int | None = None) -> dict[str, Any]:
    """Apply a plan whose `before` values were read; returns the journal entry.

    `inject_failure_after` makes the N-th change fail after writing, for the tests that
    prove a failure part-way leaves nothing half-applied.
    """
    if plan.refusals:
        raise FixRefused("; ".join(plan.refusals))
    pending = [c for c in plan.changes if not writer.is_noop(c)]
    entry: dict[str, Any] = {
        "id": time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6],
        "action": "apply",
        "fix": plan.fix_id,
        "summary": plan.summary,
        "time": time.time(),
        "root": writer.root,
        "changes": [c.to_json() for c in pending],
    }
    if not pending:
        entry["changes"] = []
        return entry
    journal = Journal(writer)
    with fix_lock(writer):
        journal_fd = journal.open()
        try:
            # Re-read under the lock: what we restore on rollback is what was there when we wrote.
            for change in pending:
                writer.read_before(change)
            applied: list[Change] = []
            try:
                for index, change in enumerate(pending):
                    applied.append(change)
                    writer.write(change, change.after)
                    if inject_failure_after is not None and index + 1 >= inject_failure_after:
                        raise FixFailed(f"injected failure after change {index + 1}")
                    writer.verify(change)
                entry["changes"] = [c.to_json() for c in pending]  # with the directories files created
                journal.append(entry, journal_fd)
            except (FixFailed, OSError) as exc:
                failures = _undo(writer, applied)
                if failures:
                    entry.update(
                        action="apply-failed",
                        error=str(exc),
                        rollback_failures=failures,
                        changes=[c.to_json() for c in applied],
                    )
                    try:
                        journal.append(entry, journal_fd)
                    except OSError:
                        pass
                    raise RollbackFailed(
                        f"{exc}; rolling back failed for: {'; '.join(failures)} (journal {entry['id']}: {journal.path})"
                    ) from exc
                raise FixFailed(f"{exc}; everything already applied was rolled back, nothing changed") from exc
        finally:
            os.close(journal_fd)
    return entry


def _targets(entry: dict[str, Any]) -> set[str]:
    return {f"{c['kind']}:{c['target']}" for c in entry.get("changes", [])}


def rollback(writer: Writer, entry_id: str | None = None) -> dict[str, Any]:
    journal = Journal(writer)
    with fix_lock(writer):
        candidates = journal.applied_not_rolled_back()
        if entry_id:
            chosen = [e for e in candidates if e["id"] == entry_id]
            if not chosen:
                known = ", ".join(e["id"] for e in candidates) or "none"
                raise NetdoctorError(f"no applied fix {entry_id} to roll back (applied: {known})")
            entry = chosen[0]
            later = [e for e in candidates[candidates.index(entry) + 1 :] if _targets(e) & _targets(entry)]
            if later:
                raise FixRefused(
                    f"{entry_id} changed what later fix(es) {', '.join(e['id'] for e in later)} changed "
                    "again; roll those back first (newest first), or restoring would undo them half"
                )
        else:
            if not candidates:
                raise NetdoctorError("nothing to roll back: the journal has no applied fix")
            entry = candidates[-1]
        changes = [Change.from_json(c) for c in entry["changes"]]
        failures = _undo(writer, changes)
        record = {
            "id": time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6],
            "action": "rollback",
            "rolls_back": entry["id"] if not failures else None,
            "fix": entry["fix"],
            "root": writer.root,
            "time": time.time(),
            "failures": failures,
        }
        journal.append(record)
        if failures:
            raise RollbackFailed(f"could not restore: {'; '.join(failures)}")
    return entry
