"""Command line. Thin: parse flags, call the package, print, exit with a monitoring-style code.

Heavy modules (psutil, pyroute2, the Prometheus client, tabulate) are imported inside
the commands so that `netdoctor --help` stays instant.

Exit codes (monitoring-plugin convention): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN —
which includes "could not run" and usage errors (click's default 2 would read as CRITICAL).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from netdoctor.sources.prometheus import prometheus_options

EXIT_UNKNOWN = 3


def _fail(message: str, code: int = EXIT_UNKNOWN) -> None:
    click.echo(f"netdoctor: {message}", err=True)
    sys.exit(code)


def _countdown_printer() -> Any:
    if not sys.stderr.isatty():
        return None

    def show(left: float) -> None:
        sys.stderr.write(f"\rsampling… {left:4.1f}s left ")
        sys.stderr.flush()

    return show


def _clear_countdown() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r" + " " * 30 + "\r")
        sys.stderr.flush()


def _parse_set(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """`--set conntrack.warn_fill_ratio=0.8` -> {"conntrack": {"warn_fill_ratio": 0.8}}."""
    from netdoctor.config import coerce

    out: dict[str, dict[str, Any]] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        check_id, dot, name = key.partition(".")
        if not sep or not dot or not check_id or not name:
            raise click.BadParameter(f"{item!r}: expected CHECK.THRESHOLD=VALUE", param_hint="--set")
        out.setdefault(check_id, {})[name] = coerce(raw)
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="netdoctor")
def cli() -> None:
    """What is wrong with this host's network: root cause first, evidence, the fix.

    Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (could not run, or judge nothing).
    """


@cli.command()
@click.option("--interval", type=float, default=None, help="Seconds between the two samples (default 5).")
@click.option("--from", "from_capture", type=click.Path(), help="Replay a capture (.tar.gz or directory).")
@click.option("--root", default="/", show_default=True, help="Read /proc and /sys under this directory.")
@click.option("--checks", "only", default=None, help="Comma-separated check ids to run (default: all).")
@click.option("--checks-dir", multiple=True, type=click.Path(), help="Folder of drop-in check modules.")
@click.option("--exclude-iface", default=None, help="Regex of interfaces not judged for saturation.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table")
@click.option("--config", "config_path", type=click.Path(), default=None, help="TOML config file.")
@click.option("--set", "set_values", multiple=True, help="Override a threshold: CHECK.NAME=VALUE.")
@prometheus_options
def diagnose(
    interval: float | None,
    from_capture: str | None,
    root: str,
    only: str | None,
    checks_dir: tuple[str, ...],
    exclude_iface: str | None,
    fmt: str,
    config_path: str | None,
    set_values: tuple[str, ...],
    **prometheus: Any,
) -> None:
    """Sample the host (or replay a capture, or read Prometheus history) and print a ranked diagnosis."""
    from pathlib import Path

    from netdoctor.config import load_config, merge_overrides
    from netdoctor.engine import diagnose as run_diagnosis
    from netdoctor.engine import load_checks
    from netdoctor.render import render

    config = load_config(config_path)
    overrides = merge_overrides(config.thresholds, _parse_set(set_values))
    if exclude_iface is not None:
        import re

        try:
            re.compile(exclude_iface)
        except re.error as exc:
            raise click.BadParameter(f"not a regex: {exc}", param_hint="--exclude-iface") from exc
        overrides.setdefault("nic_saturation", {})["exclude_iface"] = exclude_iface
    interval = interval if interval is not None else config.interval_s
    if interval <= 0:
        raise click.BadParameter("must be positive", param_hint="--interval")
    wanted = [c.strip() for c in only.split(",") if c.strip()] if only else None
    checks = load_checks([Path(d) for d in (*config.checks_dirs, *checks_dir)], wanted)
    if prometheus["prometheus_url"]:  # history: one instance (--instance) or the whole fleet (--fleet)
        from netdoctor.sources.prometheus import run_from_cli

        if from_capture:
            raise click.BadParameter("use either --from or --prometheus", param_hint="--prometheus")
        text, code = run_from_cli(prometheus, checks, overrides, fmt)
        click.echo(text, nl=False)
        sys.exit(code)
    if from_capture:
        from netdoctor.sources.capture import CaptureSource

        view = CaptureSource(from_capture).view()
    else:
        from netdoctor.sources.live import LiveSource

        view = LiveSource(root=root, interval_s=interval).view(countdown=_countdown_printer())
        _clear_countdown()
    diagnosis = run_diagnosis(view, checks, overrides)
    click.echo(render(diagnosis, fmt), nl=False)
    sys.exit(diagnosis.exit_code())


@cli.command()
@click.option("-o", "--output", required=True, type=click.Path(), help="FILE.tar.gz, or a directory.")
@click.option("--interval", type=float, default=5.0, show_default=True, help="Seconds between samples.")
@click.option("--root", default="/", show_default=True, help="Read /proc and /sys under this directory.")
def capture(output: str, interval: float, root: str) -> None:
    """Record both samples of every file the live source reads, to replay with `diagnose --from`."""
    from netdoctor.sources.capture import write_capture
    from netdoctor.sources.live import LiveSource

    if interval <= 0:
        raise click.BadParameter("must be positive", param_hint="--interval")
    source = LiveSource(root=root, interval_s=interval)
    first, second = source.samples(countdown=_countdown_printer())
    _clear_countdown()
    path = write_capture(output, first, second, source.meta(first, second))
    problems = sorted(set(first.errors) | set(second.errors))
    click.echo(f"wrote {path} ({len(first.files)} + {len(second.files)} files; {len(problems)} unreadable)")


@cli.command("checks")
@click.option("--checks-dir", multiple=True, type=click.Path(), help="Folder of drop-in check modules.")
def list_checks(checks_dir: tuple[str, ...]) -> None:
    """List the checks with their inputs and thresholds."""
    from pathlib import Path

    from netdoctor.engine import load_checks

    loaded = load_checks([Path(d) for d in checks_dir])
    for spec in loaded.specs:
        click.echo(f"{spec.id} — {spec.title}  [{spec.origin}]")
        if spec.needs:
            click.echo(f"  needs: {', '.join(spec.needs)}")
        if spec.inventory:
            click.echo(f"  inventory (live/capture only): {', '.join(spec.inventory)}")
        for name, value in spec.thresholds.items():
            click.echo(f"  {name} = {value!r}")
    for error in loaded.load_errors:
        click.echo(f"warning: {error}", err=True)


@cli.command()
@click.option("--root", default="/", show_default=True, help="Apply under this directory (tests: a fixture tree).")
@click.option("--dry-run", is_flag=True, help="Show the before -> after diff; write nothing at all.")
@click.option("--yes", is_flag=True, help="Do not ask before each change.")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Sampling for the defaults.")
@click.option("--conntrack", is_flag=True, help="Raise nf_conntrack_max and the hash size.")
@click.option("--max", "max_entries", type=int, default=None, help="With --conntrack: the new limit.")
@click.option("--irq-affinity", "irq_iface", metavar="IFACE", help="Spread IFACE's queue IRQs one per CPU.")
@click.option("--stop-irqbalance", is_flag=True, help="With --irq-affinity: stop irqbalance (restarted on rollback).")
@click.option("--rss", "rss_iface", metavar="IFACE", help="More NIC channels, or RPS on a single-queue NIC.")
@click.option("--queues", type=int, default=None, help="With --rss: channel count (default: NUMA-local CPUs).")
@click.option("--ring", "ring_iface", metavar="IFACE", help="Raise IFACE's rx/tx rings toward the maximum.")
@click.option("--rx", type=int, default=None, help="With --ring: rx ring size.")
@click.option("--tx", type=int, default=None, help="With --ring: tx ring size.")
@click.option("--ports", is_flag=True, help="Widen ip_local_port_range and/or enable tcp_tw_reuse.")
@click.option("--port-range", default=None, metavar="'LOW HIGH'", help="With --ports: the new range.")
@click.option("--tw-reuse/--no-tw-reuse", default=None, help="With --ports: set tcp_tw_reuse=1.")
@click.option("--backlog", is_flag=True, help="Raise somaxconn / netdev_max_backlog / netdev_budget.")
@click.option("--somaxconn", type=int, default=None)
@click.option("--netdev-max-backlog", type=int, default=None)
@click.option("--netdev-budget", type=int, default=None)
@click.option("--from-diagnosis", is_flag=True, help="Apply what the current diagnosis proposes.")
@click.option(
    "--rollback",
    "rollback_id",
    is_flag=False,
    flag_value="latest",
    default=None,
    metavar="[ID]",
    help="Restore what fix ID (default: the latest) changed.",
)
@click.option("--journal", "show_journal", is_flag=True, help="List applied fixes.")
def fix(**options: Any) -> None:
    """Apply a fix safely: diff first, verify after, persist, journal, roll back on demand.

    Exit codes: 0 done (or dry run, or nothing to change), 3 could not run, 4 refused
    (not root, unsafe value, irqbalance, another fix running; also a dry run that would
    be refused), 5 failed and rolled back, 6 failed and the rollback failed too (see the
    journal). Journal and lock: ROOT/var/lib/netdoctor and ROOT/run, or $NETDOCTOR_STATE_DIR.
    """
    from netdoctor.fixes.command import run_fix_command

    sys.exit(run_fix_command(options))


@cli.command()
@click.option("--listen", default="127.0.0.1:9095", show_default=True, help="HOST:PORT to listen on.")
@click.option("--prometheus", "prometheus_url", metavar="URL", help="Prometheus API the alerts come from.")
@click.option("--reports-dir", type=click.Path(), help="Where reports are written (and found after a restart).")
@click.option("--token-file", type=click.Path(), help="Require this bearer token (file holds it).")
@click.option("--forward-url", metavar="URL", help="Also post each report's summary to this webhook.")
@click.option("--config", "config_path", type=click.Path(), default=None, help="TOML config ([serve], thresholds).")
@click.option("--window", default=None, help="Rate window (PromQL duration, default 5m).")
@click.option("--lookback", default=None, help="History searched for peaks (default 1h).")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Diagnosis workers (default 2).")
@click.option("--queue-size", type=click.IntRange(1, 100000), default=None, help="Queued alerts (default 256).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info", show_default=True)
def serve(log_level: str, **options: Any) -> None:
    """Receive Alertmanager webhooks (POST /alert) and write a diagnosis report per firing alert."""
    from netdoctor.serve import run, settings_from_options

    sys.exit(run(settings_from_options(options), log_level))


def main() -> None:
    """Entry point: every error is one line on stderr and exit code 3, never a traceback."""
    from netdoctor.errors import NetdoctorError

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        _fail("interrupted")
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_UNKNOWN)
    except NetdoctorError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted")
    except BrokenPipeError:
        sys.exit(EXIT_UNKNOWN)
    except SystemExit:
        raise
    except Exception as exc:  # the last guard: a bug must still not print a traceback at 3 AM
        import os

        if os.environ.get("NETDOCTOR_DEBUG") == "1":
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (please report; rerun with NETDOCTOR_DEBUG=1)")
    sys.exit(0)
