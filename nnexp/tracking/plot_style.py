"""The house style of nnexp's plots, shared by a run's (`nnexp.tracking.plots`) and a sweep
report's (`nnexp.report.figures`, `nnexp.report.layers`):

- figures laid out by matplotlib's constrained layout, so that tick labels, axis labels, titles
  and legends are never clipped, whatever the values and the layer names;
- legends beside the axes (not over the curves), in columns when there are many entries;
  a panel's title (a run's name, as long as its overrides) wrapped to the panel's width;
- exact zeros shown on log axes, never dropped: a log axis cannot draw 0, and leaving zeros out
  hides exactly the runs that matter (``model.init=zeros``: every weight gradient is 0) or
  shortens their curves. Each zero is drawn on a floor one decade below the smallest positive
  value of the axis, marked by a dotted line labelled "exactly 0".

matplotlib's `Figure` directly (no pyplot state, no GUI backend): safe in worker processes.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

ZERO_LABEL = "exactly 0"  # the floor line's label: where a log axis draws its zeros
ZERO_COLOR = "gray"
FLOOR_DECADES = 1  # the floor sits this many decades below the smallest positive value
ALL_ZERO_FLOOR = 1e-12  # the floor when every value of the axis is 0
LEGEND_ROWS = 14  # entries per legend column beside an axis (more: another column)
CHAR_WIDTH_EM = 0.65  # a title character's width, in font sizes: generous (DejaVu Sans ~0.55)


def new_figure(width: float, height: float = 4.5) -> Any:
    """A figure whose layout makes room for every label (constrained layout)."""
    from matplotlib.figure import Figure  # slow import: only when plotting

    return Figure(figsize=(width, height), layout="constrained")


def legend_beside(ax: Any, handles: Sequence[Any] | None = None, **kwargs: Any) -> Any:
    """The axis's legend to its right, outside the data (the layout makes room for it)."""
    if handles is None:
        handles, _ = ax.get_legend_handles_labels()
    columns = max(1, math.ceil(len(handles) / LEGEND_ROWS))
    return ax.legend(
        handles=list(handles),
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize="x-small",
        ncols=columns,
        **kwargs,
    )


def panel_title(ax: Any, title: str, width: float, fontsize: str = "medium", **kwargs: Any) -> None:
    """`title` over an axis `width` inches wide, wrapped onto more lines rather than cut off
    by the figure's edge (a layout makes room for lines, not for width)."""
    from matplotlib.font_manager import FontProperties

    points = FontProperties(size=fontsize).get_size_in_points()
    chars = max(12, int(width * 72 / (CHAR_WIDTH_EM * points)))
    ax.set_title(textwrap.fill(title, chars), fontsize=fontsize, **kwargs)


def zero_floor(values: Iterable[float]) -> float | None:
    """Where a log axis draws the exact zeros among `values`: a power of ten `FLOOR_DECADES`
    below the smallest positive value (`ALL_ZERO_FLOOR` if none is positive); None when no
    value is exactly 0 (nothing to draw there). Non-finite values are gaps, not zeros."""
    finite = [v for v in values if math.isfinite(v)]
    if not any(v == 0 for v in finite):
        return None
    positive = [v for v in finite if v > 0]
    if not positive:
        return ALL_ZERO_FLOOR
    return float(10.0 ** (math.floor(math.log10(min(positive))) - FLOOR_DECADES))


def on_floor(values: Iterable[float], floor: float | None) -> list[float]:
    """`values` for a log axis: zeros on `floor`; non-finite and negative values → NaN (gaps)."""
    out = []
    for v in values:
        if not math.isfinite(v) or v < 0:
            out.append(math.nan)
        elif v == 0:
            out.append(floor if floor is not None else math.nan)
        else:
            out.append(v)
    return out


def mark_zero_floor(ax: Any, floor: float | None) -> None:
    """Log scale for `ax`; with a floor, the dotted line where its zeros are, labelled. Call it
    once the curves are drawn: if every value on the axis (and the axes sharing it) is 0, its
    one tick reads 0 — no power of ten beside a line that is not one."""
    from matplotlib.ticker import NullLocator

    ax.set_yscale("log")
    if floor is None:
        return
    siblings = ax.get_shared_y_axes().get_siblings(ax)
    values = [v for a in siblings for line in a.get_lines() for v in line.get_ydata()]
    if all(v == floor for v in values if math.isfinite(v)):
        ax.set_ylim(floor / 10, floor * 10)
        ax.set_yticks([floor], ["0"])
        ax.yaxis.set_minor_locator(NullLocator())
    ax.axhline(floor, color=ZERO_COLOR, linewidth=0.8, linestyle=":", label="_" + ZERO_LABEL)
    ax.text(
        0.01,
        floor,
        f" {ZERO_LABEL}",
        transform=ax.get_yaxis_transform(),  # x in axes units, y in data units
        va="bottom",
        fontsize="x-small",
        color=ZERO_COLOR,
    )
