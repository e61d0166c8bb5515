"""The report's plots, drawn from a `Sweep` (the tracking store) alone:

- ``val_loss.png``: every run's validation-loss curve, overlaid, colored by the first swept
  value (a color bar for numbers, a legend for names), line style by the second;
  diverged runs end in a red cross;
- ``heatmap.png``: the final objective over the first two swept axes (best over any others),
  diverged and failed cells marked; a scatter when an axis has too many values for a grid;
- ``grad_norms.png``: per-layer weight-gradient norms of chosen runs on a log axis, where
  vanishing (early layers far below late ones) and exploding gradients show — and exactly zero
  ones (``model.init=zeros``), on the axis's labelled floor;
- ``weights_output.png``: the same runs' weight norm per layer (growing without bound:
  overfitting or a too-large learning rate) and the range of their output (min, mean, max of
  the logits: saturating or collapsing predictions).

The house style of `nnexp.tracking.plot_style`, shared with a run's own plots: a constrained
layout (no label is ever clipped), legends beside the axes, exact zeros on a log axis's floor.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, cast

from nnexp.names import GRAD_NORM, WEIGHT_NORM, output_key, parse_metric
from nnexp.report.collect import RunRecord, Sweep
from nnexp.tracking.plot_style import (
    legend_beside,
    mark_zero_floor,
    new_figure,
    on_floor,
    panel_title,
    zero_floor,
)

PANEL_WIDTH = 4.2  # inches per run's panel (grad_norms.png, weights_output.png)
MAX_GRID = 12  # values per heatmap axis; more (e.g. a continuous Optuna range): a scatter
STYLES: tuple[Literal["-", "--", ":", "-."], ...] = ("-", "--", ":", "-.")
DIVERGED = "#d62728"
# The best end of the scale is the bright one, whichever way the objective improves.
_CMAPS = {"min": "viridis_r", "max": "viridis"}


# --- swept values --------------------------------------------------------------------------------


def as_number(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def as_numbers(values: Sequence[str]) -> list[float] | None:
    """Every value as a number, or None if one of them is not."""
    numbers = [as_number(v) for v in values]
    return None if None in numbers else cast("list[float]", numbers)


def ordered_values(sweep: Sweep, key: str) -> list[str]:
    """The distinct values `key` took: numerically sorted when they are numbers."""
    values = list(dict.fromkeys(r.params[key] for r in sweep.runs if key in r.params))
    numbers = as_numbers(values)
    if values and numbers is not None:
        by_number = dict(zip(values, numbers, strict=True))
        return sorted(values, key=by_number.__getitem__)
    return sorted(values)


def _norm(values: Sequence[float]):
    """A log color scale for positive values spanning a decade or more (learning rates)."""
    from matplotlib.colors import LogNorm, Normalize

    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return Normalize(0, 1)
    low, high = min(finite), max(finite)
    if low > 0 and high / low >= 10:
        return LogNorm(low, high)
    return Normalize(low, high if high > low else low + 1)


def _finite(points: Sequence[tuple[int, float]]):
    keep = [(s, v) for s, v in points if math.isfinite(v)]
    return [s for s, _ in keep], [v for _, v in keep]


def _on_log_axis(points: Sequence[tuple[int, float]], floor: float | None):
    """Steps and values for a log axis: every step with a value, zeros on `floor`."""
    steps, values = _finite(points)
    return steps, on_floor(values, floor)


def _floor_of(sweep: Sweep, panels: Sequence[tuple[RunRecord, Sequence[str]]]) -> float | None:
    """The zero floor shared by the panels' axes (they share the y axis)."""
    values = (v for run, keys in panels for key in keys for _, v in sweep.history(run, key))
    return zero_floor(values)


# --- validation-loss curves ----------------------------------------------------------------------


def loss_curves(sweep: Sweep, path: str | Path, key: str = "val/loss") -> Path | None:
    """All runs' `key` curves on one axis; None if no run logged `key`."""
    from matplotlib import colormaps

    curves = {run.run_id: sweep.history(run, key) for run in sweep.runs}
    if not any(curves.values()):
        return None
    color_key, style_key, style_values = line_keys(sweep)
    fig = new_figure(8)
    ax = fig.subplots()
    colors, handles = _colors(sweep, color_key, colormaps)
    for run in sweep.runs:
        steps, values = _finite(curves[run.run_id])
        style = STYLES[style_values.index(run.params[style_key])] if style_key else "-"
        marker = "o" if len(curves[run.run_id]) <= 20 else None
        ax.plot(steps, values, style, color=colors[run.run_id], marker=marker, markersize=3)
        if run.state == "diverged" and steps:
            ax.plot(steps[-1], values[-1], "x", color=DIVERGED, markersize=11, mew=2.5)
    if all(v > 0 for c in curves.values() for v in _finite(c)[1]):
        ax.set_yscale("log")
    epoch_axis(ax)
    ax.set_ylabel(key)
    ax.grid(alpha=0.3, which="both")
    n_diverged = sum(r.state == "diverged" for r in sweep.runs)
    ax.set_title(
        f"{key} of {len(sweep.runs)} runs" + (f" ({n_diverged} diverged)" if n_diverged else "")
    )
    _curve_legend(fig, ax, handles, color_key, style_key, style_values, n_diverged)
    return save_figure(fig, path)


def line_keys(sweep: Sweep) -> tuple[str | None, str | None, list[str]]:
    """The swept key that colors the curves (a number, e.g. lr, reads best as a color scale),
    the one that styles them (if its values fit the line styles), and that one's values."""
    keys = [k for k in sweep.swept if ordered_values(sweep, k)]
    numeric = [k for k in keys if as_numbers(ordered_values(sweep, k)) is not None]
    candidates = numeric or keys
    color_key = candidates[0] if candidates else None
    style_key = next((k for k in keys if k != color_key), None)
    style_values = ordered_values(sweep, style_key) if style_key else []
    if len(style_values) > len(STYLES):
        return color_key, None, []
    return color_key, style_key, style_values


def _curve_legend(fig, ax, handles, color_key, style_key, style_values, n_diverged) -> None:
    """A color bar for a numeric color key, else legend entries; line styles; the ✗ marker."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.lines import Line2D

    if isinstance(handles, ScalarMappable):
        fig.colorbar(handles, ax=ax, label=color_key)
        handles = []
    handles += [
        Line2D([], [], color="gray", linestyle=s, label=f"{style_key}={v}")
        for s, v in zip(STYLES, style_values, strict=False)
    ]
    if n_diverged:
        handles.append(Line2D([], [], color=DIVERGED, marker="x", linestyle="", label="diverged"))
    if handles:
        ax.legend(handles=handles, fontsize="small")


def _colors(sweep: Sweep, key: str | None, colormaps):
    """Each run's color, and what explains them: a ScalarMappable (numbers) or legend handles."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.lines import Line2D

    if key is None:
        cmap = colormaps["tab10"]
        return {r.run_id: cmap(i % 10) for i, r in enumerate(sweep.runs)}, []
    values = ordered_values(sweep, key)
    numbers = as_numbers(values)
    if numbers is not None and len(values) > 1:
        cmap, norm = colormaps["viridis"], _norm(numbers)
        colors = {
            r.run_id: cmap(norm(as_number(r.params[key]))) if key in r.params else "gray"
            for r in sweep.runs
        }
        return colors, ScalarMappable(norm=norm, cmap=cmap)
    cmap = colormaps["tab10"]
    colors = {
        r.run_id: cmap(values.index(r.params[key]) % 10) if key in r.params else "gray"
        for r in sweep.runs
    }
    handles = [Line2D([], [], color=cmap(i % 10), label=f"{key}={v}") for i, v in enumerate(values)]
    return colors, handles


# --- final objective over two swept axes ---------------------------------------------------------


def heatmap(sweep: Sweep, path: str | Path) -> Path | None:
    """The final objective over the first two swept keys (one row if only one is swept)."""
    import numpy as np
    from matplotlib import colormaps

    axes = [k for k in sweep.swept if ordered_values(sweep, k)][:2]
    if not axes or not sweep.runs:
        return None
    xs = ordered_values(sweep, axes[0])
    ys = ordered_values(sweep, axes[1]) if len(axes) > 1 else [""]
    if len(xs) > MAX_GRID or len(ys) > MAX_GRID:
        return _scatter(sweep, axes, path)
    cells, grid = _grid(sweep, axes, xs, ys)
    goal = sweep.objective_spec
    fig = new_figure(max(5.0, 1.1 * len(xs) + 2.5), max(2.6, 0.8 * len(ys) + 1.8))
    ax = fig.subplots()
    cmap = colormaps[_CMAPS[goal.direction]].with_extremes(bad="#eeeeee")
    norm = _norm(grid[np.isfinite(grid)].tolist())
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
    fig.colorbar(image, ax=ax, label=f"final {goal.describe()}")
    for (y, x), runs in cells.items():
        _cell_text(ax, x, y, grid[y, x], runs, norm, goal.direction)
    ax.set_xticks(range(len(xs)), xs)
    ax.set_xlabel(axes[0])
    ax.set_yticks(range(len(ys)), ys)
    if len(axes) > 1:
        ax.set_ylabel(axes[1])
    ax.set_title(f"final {sweep.objective} per {' × '.join(axes)}")
    return save_figure(fig, path)


def _grid(sweep: Sweep, axes: list[str], xs: list[str], ys: list[str]):
    """The runs in each (y, x) cell, and each cell's best finished objective (NaN if none):
    the best over the swept keys that are not shown."""
    import numpy as np

    cells: dict[tuple[int, int], list[RunRecord]] = {}
    for run in sweep.runs:
        if axes[0] in run.params and (len(axes) == 1 or axes[1] in run.params):
            y = ys.index(run.params[axes[1]]) if len(axes) > 1 else 0
            cells.setdefault((y, xs.index(run.params[axes[0]])), []).append(run)
    grid = np.full((len(ys), len(xs)), np.nan)
    for (y, x), runs in cells.items():
        done = [r.objective for r in runs if r.state == "finished" and math.isfinite(r.objective)]
        if done:
            grid[y, x] = sweep.objective_spec.best_of(done)
    return cells, grid


def _cell_text(ax, x: int, y: int, value: float, runs: list[RunRecord], norm, direction) -> None:
    """The cell's value (white on the dark, worst end of the scale), or ✗ and why."""
    if math.isfinite(value):
        shade = float(norm(value))  # 0..1 from the lowest value to the highest
        shade = shade if direction == "min" else 1.0 - shade  # 1: the dark, worst end
        color = "white" if shade > 0.6 else "black"
        ax.text(x, y, f"{value:.3g}", ha="center", va="center", fontsize=9, color=color)
        return
    label = "diverged" if any(r.state == "diverged" for r in runs) else runs[0].state
    ax.text(
        x,
        y,
        f"✗\n{label}",
        ha="center",
        va="center",
        fontsize=9,
        color=DIVERGED,
        fontweight="bold",
    )


def _scatter(sweep: Sweep, axes: list[str], path: str | Path) -> Path:
    """Too many values for a grid (a continuous search): one point per run instead."""
    from matplotlib import colormaps

    xs = ordered_values(sweep, axes[0])
    ys = ordered_values(sweep, axes[1]) if len(axes) > 1 else [""]

    def coord(values: list[str], value: str) -> float:
        number = as_number(value)
        return number if number is not None and all(map(as_number, values)) else values.index(value)

    fig = new_figure(8)
    ax = fig.subplots()
    good = [r for r in sweep.runs if r.state == "finished" and math.isfinite(r.objective)]
    bad = [r for r in sweep.runs if r not in good]

    def points(runs: list[RunRecord]) -> tuple[list[float], list[float]]:
        px = [coord(xs, r.params.get(axes[0], xs[0])) for r in runs]
        py = [coord(ys, r.params.get(axes[1], ys[0])) if len(axes) > 1 else 0 for r in runs]
        return px, py

    norm = _norm([r.objective for r in good])
    if good:
        dots = ax.scatter(
            *points(good),
            c=[r.objective for r in good],
            cmap=colormaps[_CMAPS[sweep.direction]],
            norm=norm,
            s=60,
            edgecolors="black",
        )
        fig.colorbar(dots, ax=ax, label=f"final {sweep.objective_spec.describe()}")
    if bad:
        ax.scatter(*points(bad), marker="x", color=DIVERGED, s=80, label="diverged / failed")
        ax.legend(fontsize="small")
    numbers = as_numbers(xs)
    if numbers and min(numbers) > 0 and max(numbers) / min(numbers) >= 10:
        ax.set_xscale("log")
    ax.set_xlabel(axes[0])
    if len(axes) > 1:
        ax.set_ylabel(axes[1])
        if not all(map(as_number, ys)):
            ax.set_yticks(range(len(ys)), ys)
    ax.grid(alpha=0.3)
    ax.set_title(f"final {sweep.objective} per run")
    return save_figure(fig, path)


# --- gradient norms ------------------------------------------------------------------------------


def chosen_runs(sweep: Sweep, limit: int = 3) -> list[RunRecord]:
    """The runs worth a gradient plot: the best, the worst that finished, and a diverged one."""
    done = sorted(
        (r for r in sweep.runs if r.state == "finished" and math.isfinite(r.objective)),
        key=lambda r: sweep.objective_spec.sort_key(r.objective),
    )
    picks = done[:1] + done[-1:] + [r for r in sweep.runs if r.state == "diverged"][:1]
    unique = list({r.run_id: r for r in picks}.values())
    return unique[:limit] or sweep.runs[:limit]


def grad_norm_curves(sweep: Sweep, runs: Sequence[RunRecord], path: str | Path) -> Path | None:
    """One panel per run: each layer's mean weight-gradient norm per epoch, log scale (exact
    zeros on the axis's "exactly 0" floor); one legend of the layers, beside the panels."""
    panels = _layer_panels(runs, _weight_grad_layer)
    if not panels:
        return None
    fig = new_figure(PANEL_WIDTH * len(panels) + 1.6, 4)
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    _layer_lines(sweep, axes, panels, _weight_grad_layer, _floor_of(sweep, panels))
    for ax in axes:
        epoch_axis(ax)
    axes[0].set_ylabel("mean ‖dL/dW‖ per step")
    fig.suptitle("weight-gradient norm per layer (log scale)")
    return save_figure(fig, path)


def weights_output_curves(sweep: Sweep, runs: Sequence[RunRecord], path: str | Path) -> Path | None:
    """One column per run: above, each layer's weight norm ‖W‖ per epoch (log scale, exact
    zeros on its floor); below, the output's range per epoch (the band from min to max of the
    logits, and their mean)."""
    panels = [
        (run, keys)
        for run, keys in _layer_panels(runs, _weight_norm_layer, keep_empty=True)
        if keys or output_key("mean") in run.metrics
    ]
    if not panels:
        return None
    fig = new_figure(PANEL_WIDTH * len(panels) + 1.6, 7)
    axes = fig.subplots(2, len(panels), squeeze=False, sharex="col")
    _layer_lines(sweep, axes[0], panels, _weight_norm_layer, None)
    for (run, _), bottom in zip(panels, axes[1], strict=True):
        low, mean, high = (
            dict(sweep.history(run, output_key(stat))) for stat in ("min", "mean", "max")
        )
        steps = sorted(set(low) & set(high) & set(mean))
        if steps:
            bottom.fill_between(
                steps,
                [low[s] for s in steps],
                [high[s] for s in steps],
                alpha=0.25,
                label="min … max",
            )
            bottom.plot(steps, [mean[s] for s in steps], label="mean")
            bottom.legend(fontsize="x-small")
        bottom.grid(alpha=0.3)
        epoch_axis(bottom)
    axes[0][0].set_ylabel("‖W‖ per layer")
    axes[1][0].set_ylabel("output (logits)")
    fig.suptitle("weight norms and output range")
    return save_figure(fig, path)


Panels = list[tuple[RunRecord, list[str]]]


def _layer_panels(runs: Sequence[RunRecord], layer_of, *, keep_empty: bool = False) -> Panels:
    """Each run with its per-layer keys (those `layer_of` names), in network order."""
    panels = []
    for run in runs:
        keys = sorted((k for k in run.metrics if layer_of(k)), key=_layer_order)
        if keys or keep_empty:
            panels.append((run, keys))
    return panels


def _layer_lines(sweep: Sweep, axes, panels: Panels, layer_of, floor: float | None) -> None:
    """A run's per-layer curves in each of `axes` on a log axis, one color per layer in every
    panel (the runs of a depth sweep have different layers), the layers' legend beside the
    last; exact zeros on `floor` (shared), or on each axis's own floor when None."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    layers = sorted({layer_of(k) for _, keys in panels for k in keys}, key=_layer_order)
    many = len(layers) > 10
    cmap = colormaps["viridis" if many else "tab10"]
    color = {
        layer: cmap(i / max(len(layers) - 1, 1) if many else i) for i, layer in enumerate(layers)
    }
    floors = []
    for ax, (run, keys) in zip(axes, panels, strict=True):
        own = floor if floor is not None else _floor_of(sweep, [(run, keys)])
        floors.append(own)
        for key in keys:
            steps, values = _on_log_axis(sweep.history(run, key), own)
            marker = "o" if len(steps) <= 20 else None
            layer = layer_of(key)
            ax.plot(steps, values, marker=marker, markersize=3, label=layer, color=color[layer])
    for ax, (run, _), own in zip(axes, panels, floors, strict=True):
        mark_zero_floor(ax, own)  # once every panel is drawn: they may share the axis
        ax.grid(alpha=0.3, which="both")
        title = run.name if run.state == "finished" else f"{run.name} ({run.state})"
        title_color = "black" if run.state == "finished" else DIVERGED
        panel_title(ax, title, PANEL_WIDTH, color=title_color)
    if layers:
        handles = [Line2D([], [], color=color[layer], label=layer) for layer in layers]
        legend_beside(axes[-1], handles, title="layer")


def _weight_norm_layer(key: str) -> str | None:
    """The layer of a ``weight_norm/<layer>`` key (None for any other key)."""
    parsed = parse_metric(key)
    return parsed.layer if parsed and parsed.family == WEIGHT_NORM else None


def _weight_grad_layer(key: str) -> str | None:
    """The layer of a ``grad_norm/<layer>/W/mean`` key (None for any other key)."""
    parsed = parse_metric(key)
    if parsed and parsed.family == GRAD_NORM and parsed.param == "W" and parsed.stat == "mean":
        return parsed.layer
    return None


def epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _layer_order(key: str) -> tuple:
    """dense_2 before dense_10: numbers in layer names compare as numbers."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key))


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
