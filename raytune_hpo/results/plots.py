"""Plot and page helpers shared by the sweep and study reports: matplotlib figures as PNG
bytes, one colour per name, and a report as one self-contained HTML page (PNGs inlined as
data URIs: no server, no network) with a Markdown twin whose plots are files beside it."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import raytune_hpo.storage as storage


def figure_grid(n: int, width: float = 6.4, height: float = 4.2):
    """A figure with ``n`` axes, two per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    if keep_titles_inside(fig):
        fig.tight_layout()  # room for the titles' new lines
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def keep_titles_inside(fig) -> bool:
    """Wrap each axes title that runs past the figure's edges (a title is centred over its
    axes: a long one was cut at both sides); whether any was wrapped."""
    import textwrap

    renderer = fig.canvas.get_renderer()
    wrapped = False
    for ax in fig.axes:
        title = ax.title
        text = " ".join(title.get_text().split())
        width = len(text)
        while width > 16:
            box = title.get_window_extent(renderer)
            if box.x0 >= fig.bbox.x0 and box.x1 <= fig.bbox.x1:
                break
            width = int(width * 0.85)
            title.set_text(textwrap.fill(text, width))
            wrapped = True
    return wrapped


def colors(names: list[str], cmap: str = "tab10") -> dict[str, tuple]:
    """One colour per name, the same in every plot."""
    import matplotlib

    cm = matplotlib.colormaps[cmap]
    return {m: cm(i % cm.N) for i, m in enumerate(names)}


def best_so_far(values: np.ndarray, mode: str) -> np.ndarray:
    """Running best of ``values`` (NaN counts as the worst)."""
    v = np.asarray(values, dtype=float)
    sign = 1.0 if mode == "min" else -1.0
    return sign * np.fmin.accumulate(np.where(np.isnan(v), np.inf, sign * v))


def parallel_coordinates(
    ax, unit: np.ndarray, names: list[str], values: np.ndarray, label: str, ticks: dict
) -> None:
    """One line per configuration across its coordinates in [0, 1] (log ranges on a log
    scale, categoricals at their index), coloured by ``values``; ``ticks[name]``: the
    (positions, labels) shown on that axis."""
    import matplotlib

    norm = matplotlib.colors.Normalize(np.nanmin(values), np.nanmax(values))
    cmap = matplotlib.colormaps["viridis"]
    xs = np.arange(len(names))
    for u, v in sorted(zip(unit, values, strict=True), key=lambda p: np.nan_to_num(p[1])):
        c = cmap(norm(v)) if np.isfinite(v) else "0.8"
        ax.plot(xs, u, color=c, alpha=0.8, lw=1.2, marker="o", ms=4)
    for i, n in enumerate(names):
        ax.axvline(i, color="0.3", lw=0.8)
        pos, labels = ticks[n]
        for p, text in zip(pos, labels, strict=True):
            ax.text(i + 0.03, p, text, fontsize=7, va="center", color="0.25")
    ax.set_xticks(xs, names, rotation=20 if len(names) > 4 else 0)
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlim(-0.2, len(names) - 0.6 if len(names) > 1 else 0.8)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    ax.figure.colorbar(sm, ax=ax, label=label)


@dataclass
class Section:
    """One part of a report: a heading, then text, a bullet list, tables and a plot."""

    title: str
    text: str = ""
    items: list[str] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)
    plot: str | None = None  # a file name in the page's plots


def fmt(df: pd.DataFrame) -> pd.DataFrame:
    return df.map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)


_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1300px}"
    "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "img{max-width:100%;border:1px solid #eee;margin:.5em 0}"
)


def html_page(title: str, intro: str, sections: list[Section], plots: dict[str, bytes]) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>{esc(intro)}</p>",
    ]
    for s in sections:
        parts.append(f"<h2>{esc(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{esc(s.text)}</p>")
        for df in s.tables:
            parts.append(df.to_html(index=False, escape=True))
        if s.items:
            parts.append("<ul>" + "".join(f"<li>{esc(x)}</li>" for x in s.items) + "</ul>")
        if s.plot:
            b64 = base64.b64encode(plots[s.plot]).decode()
            parts.append(f"<img alt='{esc(s.plot)}' src='data:image/png;base64,{b64}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def markdown_page(title: str, intro: str, sections: list[Section]) -> str:
    lines = [f"# {title}", "", intro, ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        if s.text:
            lines += [s.text, ""]
        for df in s.tables:
            lines += [df.to_markdown(index=False), ""]
        if s.items:
            lines += [f"- {x}" for x in s.items] + [""]
        if s.plot:
            lines += [f"![{s.plot}]({s.plot})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    out: str | Path, title: str, intro: str, sections: list[Section], plots: dict[str, bytes]
) -> dict[str, str]:
    """``report.html``, ``report.md`` and the PNGs into ``out`` (a local path or a URI)."""
    for name, data in plots.items():
        storage.write_bytes(storage.join(out, name), data)
    html_path, md_path = storage.join(out, "report.html"), storage.join(out, "report.md")
    storage.write_text(html_path, html_page(title, intro, sections, plots))
    storage.write_text(md_path, markdown_page(title, intro, sections))
    return {"html": html_path, "markdown": md_path}


__all__ = [
    "Section",
    "best_so_far",
    "colors",
    "keep_titles_inside",
    "figure_grid",
    "fmt",
    "html_page",
    "markdown_page",
    "parallel_coordinates",
    "png",
    "write_report",
]
