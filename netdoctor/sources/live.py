"""The live host: two reads of /proc and /sys `interval` seconds apart."""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import Callable

from netdoctor.sources.collect import build_view
from netdoctor.sources.reader import RawSample, Reader
from netdoctor.view import SampleView

Countdown = Callable[[float], None]


def _warm_imports() -> None:
    """Import what the second read, the checks and the renderers need, so none of it runs after the window."""
    import importlib

    for name in ("pyroute2", "tabulate", "netdoctor.engine", "netdoctor.sources.parsers.sockets"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


class LiveSource:
    """An in-process node_exporter that also takes the rate over its own window."""

    def __init__(self, root: str = "/", interval_s: float = 5.0) -> None:
        if interval_s <= 0:
            raise ValueError("interval must be positive")
        self.root = root
        self.interval_s = interval_s
        self.reader = Reader(root)

    def describe(self) -> str:
        return "live host" if os.path.abspath(self.root) == "/" else f"tree {self.root}"

    def samples(self, countdown: Countdown | None = None) -> tuple[RawSample, RawSample]:
        """First read without sockets (the inventory is a "now" fact), wait, second read with them."""
        first = self.reader.sample(sockets=False)
        deadline = first.taken_at + self.interval_s
        _warm_imports()  # the window is idle time: pay the import cost of what comes after it now
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if countdown is not None:
                countdown(left)
            time.sleep(min(left, 0.25 if countdown else left))
        second = self.reader.sample(sockets=True)
        return first, second

    def meta(self, first: RawSample, second: RawSample) -> dict[str, object]:
        return {
            "interval_s": second.taken_at - first.taken_at,
            "kernel": platform.release() if self.reader.live_extras else "",
            "hostname": socket.gethostname() if self.reader.live_extras else "",
            "taken_at": [first.wall_time, second.wall_time],
        }

    def view(self, countdown: Countdown | None = None) -> SampleView:
        first, second = self.samples(countdown)
        meta = self.meta(first, second)
        return build_view(first, second, float(meta["interval_s"]), source=self.describe(), meta=meta)
