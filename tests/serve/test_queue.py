"""The bounded queue: all-or-nothing offers, draining, and workers that survive a bad job."""

from __future__ import annotations

import threading
import time

from netdoctor.serve.queue import Job, WorkQueue


def test_offer_is_all_or_nothing_and_bounded() -> None:
    gate = threading.Event()
    done: list[str] = []

    def handle(job: Job) -> None:
        gate.wait()
        done.append(job.report_id)

    queue = WorkQueue(handle, capacity=3, workers=1)
    queue.start()
    assert queue.offer([Job("a", None)])
    time.sleep(0.1)  # the worker holds "a"; the queue is empty again
    assert queue.offer([Job("b", None), Job("c", None)])
    assert not queue.offer([Job("d", None), Job("e", None)])  # 2 + 2 > 3: none of them
    assert queue.depth == 2
    assert queue.offer([Job("d", None)])
    assert queue.retry_after_s() >= 1
    gate.set()
    assert queue.drain(10)
    assert done == ["a", "b", "c", "d"]


def test_drain_finishes_queued_jobs_and_then_refuses() -> None:
    done: list[str] = []
    queue = WorkQueue(lambda job: (time.sleep(0.01), done.append(job.report_id)), capacity=100, workers=2)
    queue.start()
    assert queue.offer([Job(str(i), None) for i in range(50)])
    assert queue.drain(30)
    assert sorted(done, key=int) == [str(i) for i in range(50)]
    assert not queue.offer([Job("late", None)])


def test_a_failing_job_does_not_kill_its_worker() -> None:
    done: list[str] = []

    def handle(job: Job) -> None:
        if job.report_id == "bad":
            raise RuntimeError("boom")
        done.append(job.report_id)

    queue = WorkQueue(handle, capacity=10, workers=1)
    queue.start()
    queue.offer([Job("bad", None), Job("good", None)])
    assert queue.drain(10)
    assert done == ["good"] and queue.failed == 1 and queue.done == 1
