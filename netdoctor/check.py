"""What a check is, and how checks are found (built-in, entry points, --checks-dir).

A check is a module (or any object) with, at its top:

    ID = "conntrack"                      # stable id, used by --checks and in JSON
    TITLE = "Conntrack table full"        # one line for `netdoctor checks`
    NEEDS = ["node_nf_conntrack_entries", ...]   # metrics it reads (documentation + Prometheus planning)
    INVENTORY = ["sockets"]               # optional: live-only inventories it uses
    THRESHOLDS = {"warn_fill_ratio": 0.75, ...}  # defaults, overridable from config and flags
    def run(view: View, thresholds: Mapping[str, Any]) -> list[Finding]: ...

`run` returns at least one finding: the problems it found, or one HEALTHY finding,
or one CANNOT_JUDGE finding that says why (never healthy when data is missing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netdoctor.model import Finding
from netdoctor.view import View


@dataclass
class CheckSpec:
    id: str
    title: str
    run: Callable[[View, Mapping[str, Any]], list[Finding]]
    needs: list[str] = field(default_factory=list)
    inventory: list[str] = field(default_factory=list)
    thresholds: dict[str, Any] = field(default_factory=dict)
    origin: str = "built-in"

    @classmethod
    def from_object(cls, obj: Any, origin: str = "built-in") -> CheckSpec:
        missing = [name for name in ("ID", "TITLE", "run") if not hasattr(obj, name)]
        if missing:
            raise ValueError(
                f"{getattr(obj, '__name__', obj)!r} is not a check: missing {', '.join(missing)}"
            )
        return cls(
            id=str(obj.ID),
            title=str(obj.TITLE),
            run=obj.run,
            needs=list(getattr(obj, "NEEDS", [])),
            inventory=list(getattr(obj, "INVENTORY", [])),
            thresholds=dict(getattr(obj, "THRESHOLDS", {})),
            origin=origin,
        )
