"""Pure parsers, one per kernel file: text in, typed values out, no I/O.

Each parser raises `netdoctor.errors.ParseError` (and nothing else) on input it
cannot make sense of; each `*_metrics` function names the parsed values in
node_exporter's vocabulary as `Metric` triples.
"""

from __future__ import annotations

Metric = tuple[str, dict[str, str], float]
