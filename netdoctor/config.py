"""The config file (TOML): default interval, extra check folders, threshold overrides.

    [diagnose]
    interval = 5
    checks_dirs = ["/etc/netdoctor/checks"]

    [thresholds.conntrack]
    warn_fill_ratio = 0.8

Flags (`--set CHECK.NAME=VALUE`, `--exclude-iface`) win over the file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netdoctor.errors import UsageError

DEFAULT_INTERVAL_S = 5.0


@dataclass
class Config:
    interval_s: float = DEFAULT_INTERVAL_S
    checks_dirs: list[str] = field(default_factory=list)
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


def coerce(text: str) -> Any:
    """A flag value as the type it looks like: int, float, bool, else the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def load_config(path: str | None) -> Config:
    if path is None:
        return Config()
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"config {path} is not valid TOML: {exc}") from exc
    diagnose = raw.get("diagnose", {})
    thresholds = raw.get("thresholds", {})
    if not isinstance(diagnose, dict) or not isinstance(thresholds, dict):
        raise UsageError(f"config {path}: [diagnose] and [thresholds.*] must be tables")
    if not all(isinstance(v, dict) for v in thresholds.values()):
        raise UsageError(f"config {path}: thresholds go in [thresholds.CHECK_ID] tables")
    try:
        interval = float(diagnose.get("interval", DEFAULT_INTERVAL_S))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"config {path}: diagnose.interval must be a number") from exc
    dirs = diagnose.get("checks_dirs", [])
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise UsageError(f"config {path}: diagnose.checks_dirs must be a list of paths")
    return Config(interval_s=interval, checks_dirs=dirs, thresholds=thresholds, raw=raw)


def merge_overrides(*layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for check_id, values in layer.items():
            merged.setdefault(check_id, {}).update(values)
    return merged
