"""A figure of a report: accuracy and score per question type, one set of bars per row, beside the paper's.

matplotlib is an optional extra (`pip install "vstream[plot]"`), imported only here and only when asked
for; figures are drawn with the Agg backend (no display, no global pyplot state).
"""

from __future__ import annotations

import math
import os
from typing import Any

from vstream.errors import VStreamError

PANELS = (("accuracy", 100.0, "accuracy (%)"), ("score", 5.0, "mean score (0–5)"))


def require_matplotlib() -> None:
    """Raise a one-line error naming the extra to install when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise VStreamError('plotting needs matplotlib: pip install "vstream[plot]"') from exc


def build_figure(report: dict[str, Any]) -> Any:
    """The report's figure (a matplotlib Figure): per benchmark, an accuracy panel and a score panel.

    In each panel, groups of bars are "overall" then each question type; each report row is one set of bars,
    labelled with its counts (judged/questions overall, judged per type); the paper's overall number stands
    beside the overall group. A missing value (nothing judged) is a gap marked "none judged", never a zero.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    numbered = list(enumerate(report["rows"], 1))
    benchmarks = list(dict.fromkeys(row["benchmark"] for _, row in numbered))
    if not benchmarks:
        raise VStreamError("nothing to plot: the report has no rows")
    widest = max(len({t for _, r in numbered if r["benchmark"] == b for t in r["by_type"]}) for b in benchmarks)
    height = 4.0 * len(benchmarks) + 0.25 * (len(numbered) + 1) / 2 + 0.5  # the panels, then the legend
    figure = Figure(figsize=(max(8.0, 3.0 * (widest + 1)), height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(benchmarks), len(PANELS), squeeze=False)
    for panels, benchmark in zip(axes, benchmarks, strict=True):
        rows = [(n, row) for n, row in numbered if row["benchmark"] == benchmark]
        for ax, (metric, top, title) in zip(panels, PANELS, strict=True):
            _draw_panel(ax, rows, metric, top)
            ax.set_title(f"{rows[0][1]['title']}: {title}")
    legend = {}
    for ax in axes[:, 0]:
        legend.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))  # label -> handle, deduplicated
    figure.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=2, fontsize=8)
    figure.suptitle(f"vstream eval report; paper: Flash-VStream as published, judged by {report['paper_judge']}")
    return figure


def _draw_panel(ax: Any, rows: list[tuple[int, dict[str, Any]]], metric: str, top: float) -> None:
    types = sorted({t for _, row in rows for t in row["by_type"]})
    groups = ["overall", *types]
    paper = rows[0][1].get("paper")
    width = 0.8 / (len(rows) + (1 if paper else 0))
    for j, (n, row) in enumerate(rows):
        stats = [row, *(row["by_type"].get(t, {}) for t in types)]
        heights = [math.nan if s.get(metric) is None else s[metric] for s in stats]
        counts = [f"{row['judged']}/{'?' if row['questions'] is None else row['questions']}"]
        counts += [f"n={s.get('judged', 0)}" for s in stats[1:]]
        xs = [g - 0.4 + width * (j + 0.5) for g in range(len(groups))]
        judge = "no judge" if row["judge"] == "none" else row["judge"]
        ax.bar(xs, heights, width, label=f"#{n} {row['model']} {row['mode']} {row['settings_key'][:8]}, {judge}")
        for x, height, text in zip(xs, heights, counts, strict=True):
            missing = math.isnan(height)
            label = f"{text} none judged" if missing else text
            ax.text(x, 0 if missing else height, label, ha="center", va="bottom", rotation=90, fontsize=7)
    if paper:
        x = -0.4 + width * (len(rows) + 0.5)
        ax.bar([x], [paper[metric]], width, label="paper (GPT-3.5 judge)", color="lightgrey", hatch="//")
        ax.text(x, paper[metric], "paper", ha="center", va="bottom", rotation=90, fontsize=7)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(0, top * 1.15)


def save_plot(report: dict[str, Any], path: str | os.PathLike) -> None:
    """Draw the report's figure into a PNG file."""
    figure = build_figure(report)
    try:
        figure.savefig(path, dpi=110)
    except OSError as exc:
        raise VStreamError(f"--plot {path}: {exc.strerror or exc}") from exc
