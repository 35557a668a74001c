"""bench/RESULTS.md bookkeeping shared by the benchmarks: one section per benchmark, and the machine line.

Why: every benchmark rewrites only its own "## ..." section of RESULTS.md (so each can be re-run alone
without losing the others' figures), and every section says when and on what it was measured, in the
same words, so that figures from different runs can be told apart.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def machine() -> str:
    """Today's date, the kernel, the CPU count and the Python version: "2025-01-31, kernel 6.1.0, nproc 8,
    Python 3.11.9"."""
    return (
        f"{time.strftime('%Y-%m-%d')}, kernel {os.uname().release}, nproc {os.cpu_count()}, "
        f"Python {sys.version.split()[0]}"
    )


def write_section(path: Path, section: str, title: str) -> None:
    """Replace the section starting with the line `title` (e.g. "## --help") by `section`, or append it,
    keeping every other section as it is."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start = text.find(title + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    path.write_text(text)
