"""Pure PromQL helpers: escaping, selectors, batching, times, and client-side rates.

Why client-side rates: Prometheus's `rate()` and `max_over_time()` drop `__name__`, so
asking for many node_exporter metrics in one query would lose which series is which.
Instead the Prometheus source asks for *raw samples* with a plain range selector
(`{__name__=~"a|b",instance="x"}[1h]`, names kept) and computes rates here, the way
Prometheus does: a decrease of a counter is a reset, counted from zero. That keeps the
number of HTTP queries small and fixed whatever the number of CPUs or interfaces.

Nothing here does I/O; every function is deterministic and unit-tested.
"""

from __future__ import annotations

import math
import re
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|y|w|d|h|m|s)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
# A GET URL longer than this is refused by common proxies (nginx 8k header buffers);
# names are split into batches so each selector stays below it.
DEFAULT_MAX_SELECTOR_CHARS = 3500

Samples = list[tuple[float, float]]


class PromQLInputError(ValueError):
    """A user-supplied duration, time or selector that cannot be used."""


def escape_label_value(value: str) -> str:
    """The body of a double-quoted PromQL string that matches `value` exactly.

    PromQL strings follow Go's escaping: backslash and double quote must be escaped,
    and control characters (a raw newline ends the string) are written as escapes, so
    no value can close the string and append its own PromQL.
    """
    out = []
    for char in value:
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def regex_escape(value: str) -> str:
    """Escape RE2 metacharacters so a `=~` matcher matches `value` literally."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value)


@dataclass(frozen=True)
class Matcher:
    """One label matcher: name, operator (=, !=, =~, !~) and the raw (unescaped) value."""

    name: str
    op: str
    value: str

    def __post_init__(self) -> None:
        if not LABEL_NAME.match(self.name):
            raise PromQLInputError(f"not a label name: {self.name!r}")
        if self.op not in ("=", "!=", "=~", "!~"):
            raise PromQLInputError(f"not a matcher operator: {self.op!r}")

    def render(self) -> str:
        return f'{self.name}{self.op}"{escape_label_value(self.value)}"'


_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)', re.S)
_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            out.append(_UNESCAPE.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def parse_selector(text: str | None) -> list[Matcher]:
    """`{job="node",env=~"prod.*"}` -> matchers, for `--selector`.

    Parsed and re-rendered (escaped) rather than pasted into queries, so a selector can
    only ever add label matchers — never close the brace and append an expression.
    """
    if text is None or not text.strip():
        return []
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise PromQLInputError(f'selector must look like {{job="node"}}: {text!r}')
    body = body[1:-1].strip()
    matchers: list[Matcher] = []
    pos = 0
    while pos < len(body):
        found = _MATCHER.match(body, pos)
        if not found:
            raise PromQLInputError(f"cannot parse selector {text!r} at {body[pos : pos + 20]!r}")
        name, op, raw, _ = found.groups()
        if name == "__name__":
            raise PromQLInputError("the selector may not choose metric names (__name__)")
        matchers.append(Matcher(name, op, _unescape(raw)))
        pos = found.end()
    return matchers


def check_metric_name(name: str) -> str:
    if not METRIC_NAME.match(name):
        raise PromQLInputError(f"not a metric name: {name!r}")
    return name


def selector(matchers: Sequence[Matcher], names: Sequence[str] = ()) -> str:
    """`{__name__=~"a|b",instance="x"}`; names are validated metric names, values escaped."""
    parts = []
    if names:
        checked = sorted({check_metric_name(n) for n in names})
        parts.append(f'__name__=~"{"|".join(regex_escape(n) for n in checked)}"')
    parts.extend(m.render() for m in matchers)
    return "{" + ",".join(parts) + "}"


def batch_names(
    names: Iterable[str], matchers: Sequence[Matcher], max_chars: int = DEFAULT_MAX_SELECTOR_CHARS
) -> list[list[str]]:
    """Split metric names into as few groups as keep each selector under `max_chars`.

    The batch count depends only on the names the checks need (a few dozen), never on
    the number of CPUs or interfaces of the host.
    """
    batches: list[list[str]] = []
    current: list[str] = []
    for name in sorted(set(names)):
        trial = current + [name]
        if current and len(selector(matchers, trial)) > max_chars:
            batches.append(current)
            current = [name]
        else:
            current = trial
    if current:
        batches.append(current)
    return batches


def parse_duration(text: str | float | int) -> float:
    """`5m`, `1h30m`, `90s`, `300` (seconds) -> seconds (> 0)."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        raw = text.strip()
        if re.fullmatch(r"\d+(\.\d+)?", raw):
            seconds = float(raw)
        else:
            pos, seconds = 0, 0.0
            for part in _DURATION_PART.finditer(raw):
                if part.start() != pos:
                    break
                seconds += float(part.group(1)) * _DURATION_SECONDS[part.group(2)]
                pos = part.end()
            if pos != len(raw) or not raw:
                raise PromQLInputError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h, 2d)")
    if not math.isfinite(seconds) or seconds <= 0:
        raise PromQLInputError(f"duration must be positive: {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds -> a PromQL duration (integer milliseconds when not whole seconds)."""
    if seconds == int(seconds):
        whole = int(seconds)
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if whole % size == 0:
                return f"{whole // size}{unit}"
        return f"{whole}s"
    return f"{int(round(seconds * 1000))}ms"


def parse_time(text: str | None, now: float | None = None) -> float:
    """`--at`: RFC 3339 (`2024-05-01T03:12:00Z`), a Unix timestamp, `-30m`, or `now`."""
    now = time.time() if now is None else now
    if text is None or text.strip() in ("", "now"):
        return now
    raw = text.strip()
    if raw.startswith("-"):
        return now - parse_duration(raw[1:])
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return float(raw)
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise PromQLInputError(
            f"not a time: {text!r} (use RFC 3339 like 2024-05-01T03:12:00Z, a Unix timestamp, or -30m)"
        ) from None
    if parsed.tzinfo is None:
        raise PromQLInputError(f"time {text!r} has no timezone: add Z or +02:00")
    return parsed.timestamp()


# ---- client-side rates over raw samples ---------------------------------------------


def reset_adjusted(samples: Samples) -> list[float]:
    """Cumulative increase at each sample, counting a decrease as a reset (Prometheus's rule)."""
    out: list[float] = []
    total = 0.0
    for index, (_, value) in enumerate(samples):
        if index:
            previous = samples[index - 1][1]
            total += value - previous if value >= previous else value
        out.append(total)
    return out


def window_rate(samples: Samples, start: float, end: float) -> float | None:
    """Per-second rate of a counter over the samples in (start, end], resets handled.

    The reset-adjusted increase between the first and last sample in the window, over
    the time between them — Prometheus's rate() without its extrapolation to the window
    edges, i.e. the same quantity the live source computes from its two reads. None
    when fewer than two samples fall in the window.
    """
    times = [t for t, _ in samples]
    lo, hi = bisect_right(times, start), bisect_right(times, end)
    inside = samples[lo:hi]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    increase = reset_adjusted(inside)[-1]
    return increase / (inside[-1][0] - inside[0][0])


def rolling_rates(samples: Samples, window: float) -> list[tuple[float, float]]:
    """(t, rate over (t - window, t]) for every sample t with a rate: the rate's history.

    Equivalent to evaluating window_rate at each sample, in O(n) with cumulative sums.
    """
    if len(samples) < 2:
        return []
    cumulative = reset_adjusted(samples)
    times = [t for t, _ in samples]
    out = []
    for index, t in enumerate(times):
        first = bisect_right(times, t - window)
        if index - first < 1 or t <= times[first]:
            continue
        out.append((t, (cumulative[index] - cumulative[first]) / (t - times[first])))
    return out


def last_in(samples: Samples, start: float, end: float) -> tuple[float, float] | None:
    """The latest sample in (start, end], for a gauge's value at `end`."""
    times = [t for t, _ in samples]
    hi = bisect_right(times, end)
    if hi == 0 or times[hi - 1] <= start:
        return None
    return samples[hi - 1]


def max_point(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(t, value) of the highest finite value (the earliest one on ties)."""
    best: tuple[float, float] | None = None
    for t, value in points:
        if math.isfinite(value) and (best is None or value > best[1]):
            best = (t, value)
    return best


def clip(samples: Samples, start: float, end: float) -> Samples:
    times = [t for t, _ in samples]
    return samples[bisect_left(times, start) : bisect_right(times, end)]
