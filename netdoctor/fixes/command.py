"""`netdoctor fix`: turn flags into plans, show them, apply them the one safe way."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import click

from netdoctor.errors import NetdoctorError, UsageError
from netdoctor.fixes.runner import FixRefused, Journal, Plan, RollbackFailed, apply_plan, diff, rollback
from netdoctor.fixes.writer import FixFailed, Writer

# Finding fix ids -> how `--from-diagnosis` plans them.
FROM_DIAGNOSIS = ("conntrack", "irq-affinity", "rss", "rps", "ring", "ports", "backlog")


# What Linux accepts as an interface name (dev_valid_name: at most 15 bytes, no '/', no
# whitespace, not "." or ".."), narrowed to the characters names use in practice: the name
# ends up in paths and in udev rules, so nothing else may reach them.
IFACE_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")


def _check_ifaces(options: dict[str, Any]) -> None:
    for key, flag in (("irq_iface", "--irq-affinity"), ("rss_iface", "--rss"), ("ring_iface", "--ring")):
        name = options.get(key)
        if name is not None and (not IFACE_NAME.fullmatch(name) or name in (".", "..")):
            raise UsageError(f"{flag} {name!r}: not an interface name")


def _plans(options: dict[str, Any], ctx: Any) -> list[Plan]:
    from netdoctor.fixes import plans

    out: list[Plan] = []
    if options["conntrack"]:
        out.append(plans.plan_conntrack(ctx, options["max_entries"]))
    if options["irq_iface"]:
        out.append(plans.plan_irq_affinity(ctx, options["irq_iface"], options["stop_irqbalance"]))
    if options["rss_iface"]:
        out.append(plans.plan_rss(ctx, options["rss_iface"], options["queues"]))
    if options["ring_iface"]:
        out.append(plans.plan_ring(ctx, options["ring_iface"], options["rx"], options["tx"]))
    if options["ports"]:
        port_range = None
        if options["port_range"]:
            parts = options["port_range"].replace("-", " ").split()
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                raise UsageError(f"--port-range {options['port_range']!r}: expected 'LOW HIGH'")
            port_range = (int(parts[0]), int(parts[1]))
        out.append(plans.plan_ports(ctx, port_range, options["tw_reuse"]))
    if options["backlog"]:
        values = {
            name: options[key]
            for name, key in (
                ("net.core.somaxconn", "somaxconn"),
                ("net.core.netdev_max_backlog", "netdev_max_backlog"),
                ("net.core.netdev_budget", "netdev_budget"),
            )
            if options[key] is not None
        }
        out.append(plans.plan_backlog(ctx, values))
    return out


def _plans_from_diagnosis(ctx: Any) -> list[Plan]:
    from netdoctor.fixes import plans

    out: list[Plan] = []
    seen: set[tuple[str, str]] = set()
    for finding in ctx.findings:
        for suggestion in finding.fixes:
            iface = str(suggestion.params.get("interface", ""))
            key = (suggestion.fix_id, iface)
            if suggestion.fix_id not in FROM_DIAGNOSIS or key in seen:
                continue
            seen.add(key)
            if suggestion.fix_id == "conntrack":
                out.append(plans.plan_conntrack(ctx))
            elif suggestion.fix_id == "irq-affinity" and iface:
                out.append(plans.plan_irq_affinity(ctx, iface))
            elif suggestion.fix_id in ("rss", "rps") and iface:
                out.append(plans.plan_rss(ctx, iface))
            elif suggestion.fix_id == "ring" and iface:
                out.append(plans.plan_ring(ctx, iface))
            elif suggestion.fix_id == "ports":
                out.append(plans.plan_ports(ctx))
            elif suggestion.fix_id == "backlog":
                out.append(plans.plan_backlog(ctx))
    return out


def run_fix_command(options: dict[str, Any]) -> int:
    from netdoctor.fixes import build_context, require_root

    root = options["root"]
    writer = Writer(root)
    if options["show_journal"]:
        for entry in Journal(writer).for_root():
            what = entry.get("summary", "")
            if entry.get("rolls_back"):
                what = f"restores {entry['rolls_back']}"
            click.echo(f"{entry['id']}  {entry['action']:<12} {entry.get('fix', '')}  {what}")
        return 0
    if options["rollback_id"] is not None:
        if (why := require_root(root)) is not None:
            raise FixRefused(why)
        entry = rollback(writer, None if options["rollback_id"] == "latest" else options["rollback_id"])
        click.echo(f"rolled back {entry['id']} ({entry['fix']}): {len(entry['changes'])} change(s) restored")
        return 0
    chosen = [options[k] for k in ("conntrack", "irq_iface", "rss_iface", "ring_iface", "ports", "backlog")]
    if not any(chosen) and not options["from_diagnosis"]:
        raise UsageError(
            "name a fix (--conntrack, --irq-affinity IFACE, --rss IFACE, --ring IFACE, --ports, "
            "--backlog), --from-diagnosis, --rollback [ID] or --journal"
        )
    if not options["dry_run"] and (why := require_root(root)) is not None:
        raise FixRefused(why)
    if options["from_diagnosis"] and not options["dry_run"] and not options["yes"] and not sys.stdin.isatty():
        raise FixRefused("--from-diagnosis asks before each change; not on a terminal, pass --yes")
    if options["interval"] <= 0:
        raise UsageError("--interval must be positive")
    _check_ifaces(options)
    if not os.path.isdir(root):
        raise UsageError(f"--root {root}: no such directory")
    ctx = build_context(root, options["interval"])
    try:
        plans = _plans_from_diagnosis(ctx) if options["from_diagnosis"] else _plans(options, ctx)
    except FixFailed as exc:
        # Planning only reads: nothing was written, so this is "could not run" (3), not a failed apply.
        raise NetdoctorError(f"cannot plan the fix: {exc}") from exc
    if not plans:
        click.echo("nothing to fix: the diagnosis proposes no change")
        return 0
    code = 0
    for plan in plans:
        click.echo(diff(plan), nl=False)
        if plan.refusals:
            verb = "would be refused" if options["dry_run"] else "refused"
            click.echo(f"{plan.fix_id} {verb}: {'; '.join(plan.refusals)}", err=True)
            code = max(code, FixRefused.exit_code)
            continue
        if options["dry_run"] or not plan.changes:
            continue
        if not options["yes"] and sys.stdin.isatty() and not click.confirm(f"apply {plan.fix_id}?", default=False):
            click.echo(f"skipped {plan.fix_id}")
            continue
        try:
            entry = apply_plan(plan, writer)
        except (FixRefused, FixFailed, RollbackFailed) as exc:
            click.echo(f"netdoctor: {plan.fix_id}: {exc}", err=True)
            code = max(code, exc.exit_code)
            if isinstance(exc, FixRefused):
                break  # another fix holds the lock, or the journal is unusable: the next plans would hit it too
            continue
        if entry["changes"]:
            click.echo(
                f"applied and verified {plan.fix_id} as {entry['id']}; undo: netdoctor fix --rollback "
                f"{entry['id']}" + (f" --root {root}" if root != "/" else "")
            )
        else:
            click.echo(f"{plan.fix_id}: already as wanted, nothing changed")
    if options["dry_run"]:
        click.echo("dry run: nothing was written")
    return code
