"""While sampling on a terminal, diagnose shows a countdown on stderr (and nothing when not a terminal)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys


def test_countdown_on_a_terminal_only() -> None:
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "netdoctor", "diagnose", "--interval", "0.6", "--format", "json"],
            stdout=subprocess.PIPE, stderr=slave, timeout=60,
        )
        os.close(slave)
        slave = -1
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO once the child side is closed
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
    assert b"sampling" in seen and b"s left" in seen
    assert done.stdout.lstrip().startswith(b"{")  # stdout stays clean JSON
    piped = subprocess.run(
        [sys.executable, "-m", "netdoctor", "diagnose", "--interval", "0.3", "--format", "json"],
        capture_output=True, timeout=60,
    )
    assert b"sampling" not in piped.stderr
