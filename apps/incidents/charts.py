"""Bar charts as inline SVG, drawn on the server (the app is offline: no JavaScript chart library).

A chart is a list of categories (one bar each) and one or more series (the stacked parts of every
bar, each with its colour). This module only does the geometry — where each rect, tick and label
goes — and the templates in ``templates/incidents/charts/`` write the SVG. Every label, asset
name and cause included, reaches the page through the templates' autoescaping: nothing here is
marked safe except the rendered template itself.

Each chart comes with an ``aria-label`` summary, a ``<title>`` tooltip per bar part, a legend when
there are several series, and the same numbers as a table in a ``<details>``; a chart without
data says so instead ("No incidents in this period.").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from django.template.loader import render_to_string

EMPTY_TEXT = "No incidents in this period."
LABEL_CHARS = 22  # a category label longer than this is shortened on the axis (full in the tooltip)

# Colours are constants (never user data), chosen to stay apart when stacked.
PRIORITY_COLORS = {"critical": "#7a1a12", "high": "#d1432f", "normal": "#0b5cad", "low": "#8fb3d9"}
DOWNTIME_COLORS = {"unplanned": "#b42318", "planned": "#0b5cad", "": "#9aa5b1"}
FEEDBACK_COLORS = {"up": "#1a7f37", "down": "#b42318"}
DEFAULT_COLOR = "#0b5cad"

Formatter = Callable[[float], str]


@dataclass
class Series:
    key: str
    label: str
    values: list[float]
    color: str = DEFAULT_COLOR


# --- number formats ----------------------------------------------------------------------------


def fmt_count(value: float) -> str:
    return str(int(round(value)))


def fmt_hours(hours: float) -> str:
    """A duration given in hours, as people read it: 45 min, 3.5 h, 2.1 d."""
    if hours <= 0:
        return "0 h"
    if hours < 1:
        return f"{max(1, round(hours * 60))} min"
    if hours < 48:
        return f"{hours:.1f}".removesuffix(".0") + " h"
    return f"{hours / 24:.1f}".removesuffix(".0") + " d"


def fmt_hours_tick(hours: float) -> str:
    return f"{hours:g} h"


def hours(value: timedelta | None) -> float:
    return value.total_seconds() / 3600 if value else 0.0


def duration_text(value: timedelta | None) -> str:
    """A timedelta for the summary cards: "2 d 4 h", "3 h 20 min", "12 min"; "—" when unknown."""
    if value is None:
        return "—"
    minutes = int(round(value.total_seconds() / 60))
    days, minutes = divmod(minutes, 24 * 60)
    hrs, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hrs} h" if hrs else f"{days} d"
    if hrs:
        return f"{hrs} h {minutes} min" if minutes else f"{hrs} h"
    return f"{minutes} min"


def _num(value: float) -> str:
    """An SVG coordinate: always a dot decimal, whatever the locale the template would use."""
    return f"{value:.1f}".removesuffix(".0")


def _shorten(text: str, limit: int = LABEL_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def nice_ticks(maximum: float, *, target: int = 5, integer: bool = False) -> list[float]:
    """Axis ticks from 0 to a round number at or above ``maximum``: steps of 1, 2 or 5 × 10^k."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1, math.ceil(step))
    count = math.ceil(maximum / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]


# --- the shared part ---------------------------------------------------------------------------


def _tooltip(label: str, series: Series, value: float, fmt: Formatter, *, stacked: bool) -> str:
    return f"{label} — {series.label}: {fmt(value)}" if stacked else f"{label}: {fmt(value)}"


def _totals(categories: list[str], series: list[Series]) -> list[float]:
    return [sum(s.values[i] for s in series) for i in range(len(categories))]


def _context(
    *, chart_id, title, caption, category_header, categories, series, fmt, empty, totals
) -> dict:
    shown = [s for s in series if any(v for v in s.values)] or series[:1]
    legend = [{"label": s.label, "color": s.color} for s in shown] if len(series) > 1 else []
    parts = shown if len(series) > 1 else []  # one series: its column would repeat the total
    table = {
        "header": [category_header] + [s.label for s in parts] + ["Total"],
        "rows": [
            [categories[i]] + [fmt(s.values[i]) for s in parts] + [fmt(totals[i])]
            for i in range(len(categories))
        ],
    }
    top = max(range(len(categories)), key=lambda i: totals[i]) if categories else None
    aria = f"{title}: bar chart, {len(categories)} bar{'s' if len(categories) != 1 else ''}"
    if top is not None:
        aria += f"; highest: {categories[top]}, {fmt(totals[top])}"
    aria += ". The data table follows the chart."
    return {
        "id": chart_id,
        "title": title,
        "caption": caption,
        "empty": empty if not categories or not any(totals) else "",
        "legend": legend,
        "table": table,
        "aria_label": aria,
        "shown": shown,
    }


def _render(template: str, context: dict) -> str:
    return render_to_string("incidents/charts/chart.html", {"chart": context, "svg_template": template})


# --- horizontal bars ---------------------------------------------------------------------------


def bar_chart(
    *,
    chart_id: str,
    title: str,
    categories: list[str],
    series: list[Series],
    caption: str = "",
    category_header: str = "Category",
    fmt: Formatter = fmt_count,
    tick_fmt: Formatter | None = None,
    integer: bool = True,
    empty: str = EMPTY_TEXT,
) -> str:
    """Horizontal bars, one per category, stacked by series; labels on the left (long labels,
    such as causes and asset names, fit there)."""
    totals = _totals(categories, series)
    ctx = _context(
        chart_id=chart_id, title=title, caption=caption, category_header=category_header,
        categories=categories, series=series, fmt=fmt, empty=empty, totals=totals,
    )
    if ctx["empty"]:
        return _render("", ctx)
    width, label_w, value_w, row_h, bar_h, top = 520, 164, 62, 32, 22, 8
    plot_x = label_w + 10
    plot_w = width - plot_x - value_w
    ticks = nice_ticks(max(totals), integer=integer)
    scale = plot_w / ticks[-1]
    axis_y = top + row_h * len(categories)
    rows = []
    for i, label in enumerate(categories):
        y = top + i * row_h + (row_h - bar_h) / 2
        x = plot_x
        segments = []
        for s in ctx["shown"]:
            value = s.values[i]
            if value <= 0:
                continue
            w = value * scale
            segments.append({
                "x": _num(x), "y": _num(y), "w": _num(max(w, 1)), "h": _num(bar_h), "color": s.color,
                "tooltip": _tooltip(label, s, value, fmt, stacked=len(series) > 1),
            })
            x += w
        rows.append({
            "label": label,
            "short": _shorten(label),
            "text_y": _num(y + bar_h / 2 + 4.5),
            "segments": segments,
            "total_x": _num(x + 6),
            "total": fmt(totals[i]),
        })
    ctx["g"] = {
        "width": width,
        "height": axis_y + 24,
        "label_x": label_w,
        "plot_x": plot_x,
        "plot_right": _num(plot_x + plot_w),
        "top": top,
        "axis_y": axis_y,
        "tick_label_y": axis_y + 17,
        "ticks": [{"x": _num(plot_x + t * scale), "label": (tick_fmt or fmt)(t)} for t in ticks],
        "rows": rows,
    }
    return _render("incidents/charts/bar.html", ctx)


# --- vertical stacked columns (over time) ------------------------------------------------------


def column_chart(
    *,
    chart_id: str,
    title: str,
    categories: list[str],
    series: list[Series],
    caption: str = "",
    category_header: str = "Category",
    short_labels: list[str] | None = None,
    fmt: Formatter = fmt_count,
    tick_fmt: Formatter | None = None,
    integer: bool = True,
    empty: str = EMPTY_TEXT,
    width: int = 520,
) -> str:
    """Vertical columns, one per category (e.g. a week), stacked by series; every category keeps
    its slot, so an empty week shows as a gap. ``short_labels`` go under the axis."""
    totals = _totals(categories, series)
    ctx = _context(
        chart_id=chart_id, title=title, caption=caption, category_header=category_header,
        categories=categories, series=series, fmt=fmt, empty=empty, totals=totals,
    )
    if ctx["empty"]:
        return _render("", ctx)
    short_labels = short_labels or [_shorten(c, 8) for c in categories]
    height, left, right, top, bottom = 260, 40, 8, 18, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    axis_y = top + plot_h
    n = len(categories)
    slot = plot_w / n
    bar_w = max(slot * 0.7, 1)
    every = max(1, math.ceil(n * 50 / plot_w))  # about 50 px per axis label
    ticks = nice_ticks(max(totals), integer=integer)
    scale = plot_h / ticks[-1]
    columns = []
    for i, label in enumerate(categories):
        x = left + i * slot + (slot - bar_w) / 2
        y = axis_y
        segments = []
        for s in ctx["shown"]:
            value = s.values[i]
            if value <= 0:
                continue
            h = value * scale
            y -= h
            segments.append({
                "x": _num(x), "y": _num(y), "w": _num(bar_w), "h": _num(max(h, 1)), "color": s.color,
                "tooltip": _tooltip(label, s, value, fmt, stacked=len(series) > 1),
            })
        columns.append({
            "label": label,
            "short": short_labels[i] if i % every == 0 else "",
            "slot_x": _num(left + i * slot),
            "slot_w": _num(slot),
            "center_x": _num(x + bar_w / 2),
            "segments": segments,
            "total": fmt(totals[i]),
            "total_y": _num(y - 4),
            "show_total": bool(totals[i]) and slot >= 22,
        })
    ctx["g"] = {
        "width": width,
        "height": height,
        "left": left,
        "tick_x": left - 6,
        "right": width - right,
        "plot_h": plot_h,
        "top": top,
        "axis_y": axis_y,
        "label_y": axis_y + 18,
        "ticks": [{"y": _num(axis_y - t * scale), "label": (tick_fmt or fmt)(t)} for t in ticks],
        "columns": columns,
    }
    return _render("incidents/charts/columns.html", ctx)
