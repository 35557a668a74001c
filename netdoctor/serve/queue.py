"""A bounded job queue with a small worker pool, all-or-nothing submission and draining.

Why bounded: a storm of alerts must not grow memory without limit. When the queue is
full the webhook answers 503 with Retry-After and Alertmanager sends the notification
again later, so nothing is lost — which is why a payload is queued all or nothing: a
partly queued payload would be resent and its accepted half deduplicated, but an
"all or nothing" rule keeps the accounting simple to reason about and to test.

Why draining: on SIGTERM the HTTP side stops first, then `drain()` lets the workers
finish every queued job before the process exits (systemd's TimeoutStopSec bounds it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("netdoctor.serve")


@dataclass
class Job:
    """One unit of work: a report id and the alert to diagnose for it."""

    report_id: str
    alert: Any
    queued_at: float = field(default_factory=time.monotonic)


class WorkQueue:
    """`capacity` jobs at most, worked off by `workers` threads calling `handle(job)`."""

    def __init__(self, handle: Callable[[Job], None], *, capacity: int = 256, workers: int = 2) -> None:
        if capacity < 1 or workers < 1:
            raise ValueError("capacity and workers must be at least 1")
        self.handle = handle
        self.capacity = capacity
        self.workers = workers
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition()
        self._busy = 0
        self._accepting = True
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self.done = 0
        self.failed = 0
        self._job_seconds = 1.0  # moving average, for Retry-After

    def start(self) -> None:
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"netdoctor-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def depth(self) -> int:
        with self._cond:
            return len(self._jobs)

    @property
    def busy(self) -> int:
        with self._cond:
            return self._busy

    def offer(self, jobs: Sequence[Job]) -> bool:
        """Queue every job, or none when they do not all fit (or the queue is stopping)."""
        with self._cond:
            if not self._accepting or len(self._jobs) + len(jobs) > self.capacity:
                return False
            self._jobs.extend(jobs)
            self._cond.notify(len(jobs))
            return True

    def retry_after_s(self) -> int:
        """A hint for the sender: the time to work off the current queue, 1..120 s."""
        with self._cond:
            backlog = len(self._jobs) + self._busy
            estimate = backlog * self._job_seconds / self.workers
        return int(min(max(estimate, 1.0), 120.0))

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if not self._jobs and self._stopping:
                    return
                job = self._jobs.popleft()
                self._busy += 1
            started = time.monotonic()
            try:
                self.handle(job)
                ok = True
            except Exception:  # a handler bug must not kill the worker; the job is logged
                log.exception("job %s failed", job.report_id)
                ok = False
            elapsed = time.monotonic() - started
            with self._cond:
                self._busy -= 1
                self.done += ok
                self.failed += not ok
                self._job_seconds = 0.8 * self._job_seconds + 0.2 * elapsed
                self._cond.notify_all()

    def drain(self, timeout_s: float | None = None) -> bool:
        """Refuse new jobs, finish the queued ones, stop the workers; True if all finished in time."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            self._accepting = False
            while self._jobs or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            finished = not self._jobs and not self._busy
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=1.0 if not finished else None)
        return finished
