"""Listeners' accept-queue limits through sock_diag netlink (live source only)."""

from __future__ import annotations

import socket

TCP_LISTEN_STATE_BIT = 1 << 10


def listen_backlogs() -> tuple[dict[int, int] | None, str | None]:
    """({inode: backlog limit}, why not) for every TCP listener in this network namespace."""
    try:
        from pyroute2 import DiagSocket
    except ImportError as exc:  # pragma: no cover - a declared dependency
        return None, f"pyroute2 unavailable: {exc}"
    backlogs: dict[int, int] = {}
    try:
        with DiagSocket() as diag:
            diag.bind()
            for family in (socket.AF_INET, socket.AF_INET6):
                for message in diag.get_sock_stats(family=family, states=TCP_LISTEN_STATE_BIT):
                    inode = message.get("idiag_inode")
                    if inode:
                        backlogs[int(inode)] = int(message.get("idiag_wqueue") or 0)
    except Exception as exc:  # netlink errors come in many classes; all mean "not known"
        return None, f"sock_diag netlink query failed: {exc}"
    return backlogs, None
