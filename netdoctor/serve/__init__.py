"""`netdoctor serve`: Alertmanager webhook -> a diagnosis report per firing alert.

    Alertmanager --POST /alert--> app (validate, dedupe, bounded queue) --> workers
        --> diagnose_alert(alert): PrometheusSource(instance, at=startsAt) -> Diagnosis
        --> reports (Markdown + JSON, atomic, named by hash) --> optional forward

The CLI calls `settings_from_options` then `run`; tests build `ServeApp` directly.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from netdoctor.errors import UsageError
from netdoctor.serve.worker import ServeSettings

__all__ = ["ServeSettings", "settings_from_options", "run", "parse_listen"]


def parse_listen(text: str) -> tuple[str, int]:
    """`127.0.0.1:9095`, `[::1]:9095` or `:9095` (loopback) -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port_text)


def _read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"cannot read --token-file {path}: {exc.strerror or exc}") from None
    if len(token) < 16:
        raise UsageError(f"--token-file {path}: the token must be at least 16 characters")
    return token


def _number(table: Mapping[str, Any], key: str, default: float, kind: type = float) -> Any:
    value = table.get(key, default)
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"config [serve] {key}: expected a number, got {value!r}") from None
    if out <= 0:
        raise UsageError(f"config [serve] {key}: must be positive")
    return out


def settings_from_options(options: Mapping[str, Any]) -> ServeSettings:
    """CLI flags + the `[serve]` table of `--config` -> ServeSettings (flags win)."""
    from netdoctor.config import load_config
    from netdoctor.sources import promql

    config = load_config(options.get("config_path"))
    table = config.raw.get("serve", {})
    if not isinstance(table, dict):
        raise UsageError("config: [serve] must be a table")
    autofix = table.get("autofix", {})
    if not isinstance(autofix, dict) or not all(
        isinstance(v, list) and all(isinstance(i, str) for i in v) for v in autofix.values()
    ):
        raise UsageError('config [serve.autofix]: expected ALERTNAME = ["fix-id", ...]')
    host, port = parse_listen(options.get("listen") or table.get("listen") or "127.0.0.1:9095")
    prometheus = options.get("prometheus_url") or table.get("prometheus")
    reports_dir = options.get("reports_dir") or table.get("reports_dir")
    if not prometheus:
        raise UsageError("serve needs --prometheus URL (or prometheus = ... in [serve])")
    if not re.match(r"^https?://[^/]+", str(prometheus)):
        raise UsageError(f"--prometheus {prometheus!r}: expected http://HOST:PORT or https://HOST:PORT[/path]")
    if not reports_dir:
        raise UsageError("serve needs --reports-dir DIR (or reports_dir = ... in [serve])")
    token_file = options.get("token_file") or table.get("token_file")
    try:
        window_s = promql.parse_duration(options.get("window") or table.get("window") or "5m")
        lookback_s = promql.parse_duration(options.get("lookback") or table.get("lookback") or "1h")
    except promql.PromQLInputError as exc:
        raise UsageError(str(exc)) from None
    return ServeSettings(
        prometheus_url=str(prometheus),
        reports_dir=Path(reports_dir),
        host=host,
        port=port,
        token=_read_token(token_file) if token_file else None,
        forward_url=options.get("forward_url") or table.get("forward_url"),
        public_url=str(table.get("public_url", "")),
        window_s=window_s,
        lookback_s=lookback_s,
        timeout_s=_number(table, "timeout", 30.0),
        workers=options.get("workers") or _number(table, "workers", 2, int),
        queue_size=options.get("queue_size") or _number(table, "queue_size", 256, int),
        max_body_bytes=_number(table, "max_body_bytes", 1 << 20, int),
        drain_timeout_s=_number(table, "drain_timeout", 120.0),
        overrides=config.thresholds,
        checks_dirs=list(config.checks_dirs),
        autofix={str(k): list(v) for k, v in autofix.items()},
        prometheus_bearer_token_file=table.get("prometheus_bearer_token_file"),
    )


def run(settings: ServeSettings, log_level: str = "info") -> int:
    """Serve until SIGTERM/SIGINT; drain the queue; 0 when every queued alert was reported."""
    from netdoctor.serve.app import ServeApp

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = ServeApp(settings)
    except OSError as exc:
        raise UsageError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return 0 if app.run_until_signalled() else 1
