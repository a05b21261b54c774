"""Charts as inline SVG: a scatter (or lines) where hovering a point names its run, and a latent
map where hovering a point names its class. Inline SVG rather than a plotting library's script:
a chart is a few kilobytes inside its page, draws with scripts off, and the browser test finds its
points in the page itself (plotly's script alone is ~4.6 MB, Vega-Lite's three ~1 MB; what they
add beyond hover, zoom and pan, these small charts do not need)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.site.html import esc

PALETTE = (
    "#2458b3", "#d1495b", "#2a9d8f", "#e9a23b", "#6a4c93", "#3d8bd9", "#8c564b", "#e377c2", "#4d4d4d",
    "#9bbb3b", "#17becf", "#b07aa1", "#ff7f0e", "#1f6f50", "#7f7f7f", "#bcbd22",
)  # fmt: skip
W, H, PAD = 440, 290, (44, 14, 26, 46)  # width, height; padding left, right, top, bottom


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    tip: str  # what hovering says: the run or row it is
    series: str = ""  # colour and legend; with lines=True, the points of a series are joined
    href: str | None = None  # where clicking it goes (its run page)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if (hi - lo) / (step * m) <= n)
    return list(np.arange(math.ceil(lo / step) * step, hi + step * 0.001, step))


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:g}"


def scatter(points: list[Point], title: str, xlabel: str, ylabel: str, logx=False, lines=False) -> str:
    """An SVG chart of `points` (x on a log2 axis with `logx`), a legend of its series."""
    if not points:
        return ""
    fx = (lambda v: math.log2(v)) if logx else (lambda v: v)
    xs, ys = [fx(p.x) for p in points], [p.y for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    xpad, ypad = (x1 - x0) * 0.05 or 1, (y1 - y0) * 0.08 or 1
    x0, x1, y0, y1 = x0 - xpad, x1 + xpad, y0 - ypad, y1 + ypad
    left, right, top, bottom = PAD

    def px(v):
        return left + (fx(v) - x0) / (x1 - x0) * (W - left - right)

    def py(v):
        return H - bottom - (v - y0) / (y1 - y0) * (H - top - bottom)

    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">']
    out.append(f'<text x="{left}" y="14" font-weight="600">{esc(title)}</text>')
    for t in _ticks(y0, y1):
        y = py(t)
        out.append(f'<line class="grid" x1="{left}" x2="{W - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    xticks = sorted({p.x for p in points}) if logx else _ticks(x0, x1)
    for t in xticks if len(xticks) <= 12 else xticks[:: math.ceil(len(xticks) / 12)]:
        x = px(t)  # px applies the log itself
        out.append(f'<text x="{x:.1f}" y="{H - bottom + 14}" text-anchor="middle">{_fmt(t)}</text>')
    out.append(
        f'<line class="axis" x1="{left}" x2="{W - right}" y1="{H - bottom}" y2="{H - bottom}"/>'
        f'<text x="{(left + W - right) / 2}" y="{H - 8}" text-anchor="middle">{esc(xlabel)}</text>'
        f'<text transform="translate(12 {(top + H - bottom) / 2}) rotate(-90)" text-anchor="middle">'
        f"{esc(ylabel)}</text>"
    )
    series = list(dict.fromkeys(p.series for p in points))
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}
    if lines:
        for s in series:
            mine = sorted((p for p in points if p.series == s), key=lambda p: p.x)
            if len(mine) > 1:
                path = " ".join(f"{px(p.x):.1f},{py(p.y):.1f}" for p in mine)
                out.append(f'<polyline points="{path}" fill="none" stroke="{colour[s]}" stroke-width="1.3"/>')
    for p in points:
        dot = (
            f'<circle cx="{px(p.x):.1f}" cy="{py(p.y):.1f}" r="4" fill="{colour[p.series]}" '
            f'fill-opacity="0.85" data-tip="{esc(p.tip)}"><title>{esc(p.tip)}</title></circle>'
        )
        out.append(f'<a href="{esc(p.href)}">{dot}</a>' if p.href else dot)
    out.append("</svg>")
    legend = " ".join(
        f'<span style="color:{colour[s]}">●</span>&nbsp;{esc(s)}' for s in series if s and len(series) > 1
    )
    return "".join(out) + (f"<figcaption>{legend}</figcaption>" if legend else "")


def latent_map(xy: np.ndarray, y: np.ndarray, classes: list[str], title: str, points: int = 600) -> str:
    """A latent map's points (down-sampled to `points`, the same ones for a given map), coloured
    and grouped by class: hovering a point names its class."""
    xy = np.asarray(xy, np.float32)
    if len(xy) > points:
        keep = np.sort(np.random.default_rng(0).choice(len(xy), points, replace=False))
        xy, y = xy[keep], np.asarray(y)[keep]
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi > lo, hi - lo, 1)
    size = 210
    pts = 5 + (xy - lo) / span * (size - 10)
    out = [f'<svg class="chart map" viewBox="0 0 {size} {size}" width="{size}" height="{size}" role="img">']
    for c in np.unique(y):
        name = classes[int(c)] if int(c) < len(classes) else str(int(c))
        fill = (
            PALETTE[int(c) % len(PALETTE)]
            if len(classes) <= len(PALETTE)
            else f"hsl({int(c) * 137 % 360},60%,45%)"
        )
        dots = "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="1.8"/>' for a, b in pts[y == c])
        out.append(
            f'<g fill="{fill}" data-tip="class {esc(name)}"><title>class {esc(name)}</title>{dots}</g>'
        )
    out.append("</svg>")
    return f"<figure>{''.join(out)}<figcaption>{esc(title)}</figcaption></figure>"


def line(values: list[float], title: str, xlabel: str, ylabel: str) -> str:
    """A loss curve: one value per epoch."""
    pts = [Point(i + 1, float(v), f"epoch {i + 1}: {v:.4g}", "loss") for i, v in enumerate(values)]
    return scatter(pts, title, xlabel, ylabel, lines=True)
