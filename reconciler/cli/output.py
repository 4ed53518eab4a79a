"""A plan or a drift report on stdout, in the format asked for (plan, drift and show)."""

from __future__ import annotations

import click

from reconciler.cli.common import colour
from reconciler.drift import DriftReport
from reconciler.plan import Plan
from reconciler.render.markdown import render_drift_markdown, render_plan_markdown
from reconciler.render.text import render_drift_text, render_plan_text
from reconciler.workflow import drift_as_json, plan_as_json


def emit(result: Plan | DriftReport, output_format: str) -> None:
    """A plan or a drift report on stdout, in the format asked for."""
    if output_format == "json":
        text = plan_as_json(result) if isinstance(result, Plan) else drift_as_json(result)
    elif output_format == "markdown":
        text = render_plan_markdown(result) if isinstance(result, Plan) else render_drift_markdown(result)
    else:
        shade = colour()
        text = (
            render_plan_text(result, colour=shade)
            if isinstance(result, Plan)
            else render_drift_text(result, colour=shade)
        )
    click.echo(text, nl=False)
