"""Small helpers shared by the built-in checks (not a check: no ID, no run).

Why a module: several checks need the same few things done the same way — turning a
View's points into {label value: number} while dropping hostile values (NaN, negative),
merging the engine's thresholds over a check's defaults, "magnitude" for thresholds
that are "any rise", formatting ratios and rates for a one-line summary, and the
virtual-interface regex. Keeping them here keeps each check short and consistent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from netdoctor.model import Evidence, Severity
from netdoctor.view import Point, View

# Interfaces that have no physical link speed or whose "saturation" means nothing:
# loopback, container/VM plumbing (veth, bridges, docker, libvirt, Calico, Flannel, CNI)
# and tunnels. Used by nic_saturation; nic_errors only excludes lo (errors on veth are real).
VIRTUAL_IFACE_REGEX = r"^(lo|veth.*|br-.*|docker.*|virbr.*|cali.*|flannel.*|cni.*|tun.*|tap.*)$"


def settings(defaults: Mapping[str, Any], thresholds: Mapping[str, Any]) -> dict[str, Any]:
    """The engine's thresholds over the check's defaults (a partial mapping still works)."""
    merged = dict(defaults)
    merged.update(thresholds)
    return merged


def usable(value: float | None) -> bool:
    """A number a check can reason with: finite and not negative (rates, ratios, counts)."""
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def by_label(points: Iterable[Point], label: str) -> dict[str, float]:
    """{label value: summed value} over usable points; series without the label are skipped.

    Summing per label value merges series that differ only in labels a check does not
    care about (Prometheus adds instance/job).
    """
    out: dict[str, float] = {}
    for point in points:
        key = point.labels.get(label)
        if key is None or not usable(point.value):
            continue
        out[key] = out.get(key, 0.0) + point.value
    return out


def total(points: Iterable[Point]) -> float | None:
    """Sum of usable points, or None when there is none (no series, or only NaN)."""
    values = [p.value for p in points if usable(p.value)]
    return sum(values) if values else None


def magnitude(value: float, threshold: float) -> float:
    """How far past its threshold a value is (>= 1 when over, for ranking).

    For an "any rise" threshold (0) a ratio is undefined, so the magnitude grows with
    the logarithm of the rate instead: 1 at 0/s, 2 at 9/s, 3 at 99/s.
    """
    if threshold > 0:
        return max(value / threshold, 1.0)
    return 1.0 + math.log10(1.0 + max(value, 0.0))


def severity_for(value: float, warn: float, crit: float, *, strict: bool = True) -> Severity | None:
    """CRITICAL above crit, WARNING above warn, None otherwise (">" or ">=" per `strict`)."""

    def over(limit: float) -> bool:
        return value > limit if strict else value >= limit

    if over(crit):
        return Severity.CRITICAL
    if over(warn):
        return Severity.WARNING
    return None


def evidence(
    view: View,
    metric: str,
    value: float,
    *,
    labels: Mapping[str, str] | None = None,
    threshold: float | None = None,
    unit: str = "",
    note: str = "",
) -> Evidence:
    """Evidence measured over the view's window (window_s = view.interval_s)."""
    return Evidence(
        metric=metric,
        value=value,
        labels=dict(labels or {}),
        threshold=threshold,
        unit=unit,
        window_s=view.interval_s,
        note=note,
    )


def pct(ratio: float) -> str:
    """0.0123 -> "1.23%", 0.5 -> "50%"; small ratios keep significant digits."""
    percent = ratio * 100.0
    if percent == int(percent) and abs(percent) < 1e6:
        return f"{int(percent)}%"
    if abs(percent) >= 10:
        return f"{percent:.1f}%"
    return f"{percent:.2g}%" if abs(percent) < 0.1 else f"{percent:.2f}%"


def per_s(rate: float) -> str:
    """A rate for a summary: "12/s", "0.30/s", "1.5k/s"."""
    if rate >= 1e6:
        return f"{rate / 1e6:.1f}M/s"
    if rate >= 1e4:
        return f"{rate / 1e3:.1f}k/s"
    if rate >= 10 or rate == int(rate):
        return f"{rate:.0f}/s"
    return f"{rate:.2f}/s"


def seconds(duration: float | None) -> str:
    """A window for a summary: "10s", "0.3s", "?s" when unknown."""
    if duration is None or not math.isfinite(duration):
        return "?s"
    return (
        f"{duration:.0f}s" if duration >= 10 else f"{duration:.1g}s" if duration < 1 else f"{duration:.1f}s"
    )


def cpu_order(cpu: str) -> tuple[int, str]:
    """Sort key that puts CPU "10" after CPU "9"."""
    return (int(cpu), cpu) if cpu.isdigit() else (1 << 30, cpu)


def iface_filter(pattern: str) -> re.Pattern[str]:
    """Compile an exclude regex; an empty pattern excludes nothing."""
    return re.compile(pattern or r"(?!)")
