"""Renderers: the same Diagnosis as a terminal table, JSON for machines, Markdown for reports."""

from __future__ import annotations

from netdoctor.model import Diagnosis

FORMATS = ("table", "json", "markdown")


def render(diagnosis: Diagnosis, fmt: str, width: int | None = None) -> str:
    if fmt == "json":
        from netdoctor.render.json_out import render_json

        return render_json(diagnosis)
    if fmt == "markdown":
        from netdoctor.render.markdown import render_markdown

        return render_markdown(diagnosis)
    from netdoctor.render.table import render_table

    return render_table(diagnosis, width=width)
