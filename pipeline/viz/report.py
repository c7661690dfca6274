"""The HTML report: one self-contained file with the figures inlined as base64 PNG, the
headline numbers with their intervals, and the run's identity.

A figure whose input is missing (say metrics.json before `probe3r evaluate` ran) becomes a
section that names the missing file or key instead of failing the whole report.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from pipeline.viz.figures import Stat
from pipeline.viz.pack import escape, fill_template, static_text


@dataclass(frozen=True)
class Section:
    """One part of the report: a figure (PNG bytes), an HTML fragment, or why it is missing.

    Attributes:
        title: heading, e.g. "Fig. 4 · aligned second-view error".
        caption: one or two sentences saying what to look for.
        png: the figure as PNG bytes, or None.
        html: an extra HTML fragment (a table, links), trusted: built by probe3r.
        missing: why the figure could not be drawn (names the missing input), or None.
    """

    title: str
    caption: str = ""
    png: bytes | None = None
    html: str = ""
    missing: str | None = None


def figure_png(fig: Figure, *, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (Agg, white background)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def format_stat(value: Stat | str) -> str:
    """'0.123 [0.110, 0.135]' for a Stat with an interval, '0.123' without, text as is."""
    if isinstance(value, str):
        return value
    if value.low == value.low and value.high == value.high:  # not NaN
        return f"{value.mean:.3f} [{value.low:.3f}, {value.high:.3f}]"
    return f"{value.mean:.3f}"


def _section_html(s: Section) -> str:
    parts = [f"<section><h2>{escape(s.title)}</h2>"]
    if s.missing:
        parts.append(f'<p class="missing">Not drawn: {escape(s.missing)}</p>')
    if s.png:
        uri = "data:image/png;base64," + base64.b64encode(s.png).decode("ascii")
        parts.append(f'<figure><img src="{uri}" alt="{escape(s.title)}"></figure>')
    parts.append(s.html)
    if s.caption:
        parts.append(f"<figcaption>{escape(s.caption)}</figcaption>")
    return "\n".join(parts) + "</section>"


def report_html(
    *,
    title: str,
    identity: Mapping[str, str],
    headline: Sequence[tuple[str, Stat | str]],
    sections: Sequence[Section],
    random_weights: bool,
) -> str:
    """The report page.

    Args:
        title: page title.
        identity: label → value: model, checkpoint hash or random-init, data, parameters.
        headline: (label, Stat or text) numbers, intervals shown as [low, high].
        sections: figures and tables in reading order.
        random_weights: show a warning that the model is untrained.
    """
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in identity.items())
    numbers = "".join(f"<tr><th>{escape(k)}</th><td>{escape(format_stat(v))}</td></tr>" for k, v in headline)
    body = [
        "<section><h2>Run</h2>",
        f'<table class="identity-table">{rows}</table></section>',
        "<section><h2>Headline numbers</h2>",
        (
            f'<table class="identity-table">{numbers}</table><p class="hint">mean [bootstrap interval over pairs]</p>'
            if headline
            else '<p class="missing">No headline numbers: metrics.json is missing or empty.</p>'
        ),
        "</section>",
        *(_section_html(s) for s in sections),
    ]
    warning = (
        '<div class="warn">random-init: these results describe an untrained network, not DUSt3R</div>'
        if random_weights
        else ""
    )
    return fill_template(
        "report.html",
        {
            "TITLE": escape(title),
            "STYLE": static_text("page.css"),
            "WARNING": warning,
            "BODY": "\n".join(body),
        },
    )


def write_report(path: Path, **kwargs) -> Path:
    """Write `report_html(**kwargs)` to `path` (parents created); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(**kwargs), encoding="utf-8")
    return path
