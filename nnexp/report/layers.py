"""Plots across layers and depths, for any sweep's report (``layers.png``, `nnexp.report.page`)
and the experiments of ``experiments/`` (`nnexp.report.experiments`):

- ``layer_profile``: per run, each layer's weight-gradient norm and activation statistics at the
  first epoch, against the layer's index — where an initialization's symmetry, vanishing or
  exploding shows before training has had a chance to repair (or hide) it;
- ``depth_profile``: the first layer's gradient norm against the network's depth, one line per
  activation (vanishing gradients as depth grows);
- ``train_val_curves``: one panel per run with its training and validation loss (overfitting).

Drawn from a `Sweep` (the tracking store) alone, in the house style of `nnexp.report.figures`
(exact zeros on a log axis's labelled floor, `nnexp.tracking.plot_style`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from nnexp.names import ACT, GRAD_NORM, MetricKey, grad_norm_key, parse_metric, short_value
from nnexp.report.collect import RunRecord, Sweep
from nnexp.report.figures import (
    DIVERGED,
    STYLES,
    epoch_axis,
    new_figure,
    ordered_values,
    save_figure,
)
from nnexp.tracking.plot_style import (
    legend_beside,
    mark_zero_floor,
    on_floor,
    panel_title,
    zero_floor,
)


def _weight_grad(key: MetricKey) -> bool:
    """A dense layer's weight-gradient norm, as the epoch's mean."""
    return key.family == GRAD_NORM and key.param == "W" and key.stat == "mean"


def _activation(key: MetricKey) -> bool:
    return key.family == ACT


def first_value(sweep: Sweep, run: RunRecord, key: str) -> float:
    """`key` at the run's first logged step (NaN if never logged)."""
    history = sweep.history(run, key)
    return history[0][1] if history else math.nan


def by_layer(sweep: Sweep, run: RunRecord, kind: Callable[[MetricKey], bool], stat=None):
    """(layer index, first-epoch value) of every statistic of `run` of this `kind`."""
    points = []
    for key in run.metrics:
        parsed = parse_metric(key)
        if not parsed or not kind(parsed) or parsed.index is None:
            continue
        if stat is None or parsed.stat == stat:
            points.append((parsed.index, first_value(sweep, run, key)))
    return sorted(points)


def _short(key: str) -> str:
    """``model.init`` → ``init``, ``experiment/init_sweep`` → ``init_sweep``: a legend's name."""
    return re.split(r"[./]", key)[-1]


def _style(sweep: Sweep, runs: Sequence[RunRecord], color_key: str | None, style_key: str | None):
    """Each run's (color, line style) from its swept values, and the legend entries; without
    a color key, a color per run, named after it."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    cmap = colormaps["tab10"]
    colors = ordered_values(sweep, color_key) if color_key else []
    styles = ordered_values(sweep, style_key) if style_key else []
    look = {}
    for i, run in enumerate(runs):
        c = colors.index(run.params[color_key]) if color_key in run.params else i
        s = styles.index(run.params[style_key]) % len(STYLES) if style_key in run.params else 0
        look[run.run_id] = (cmap(c % 10), STYLES[s])
    if color_key is None:
        handles = [Line2D([], [], color=look[r.run_id][0], label=r.name) for r in runs]
    else:
        name = _short(color_key)
        handles = [
            Line2D([], [], color=cmap(i % 10), label=f"{name}={short_value(v)}")
            for i, v in enumerate(colors)
        ]
    handles += [
        Line2D(
            [],
            [],
            color="gray",
            linestyle=STYLES[i % len(STYLES)],
            label=f"{_short(style_key)}={short_value(v)}",
        )
        for i, v in enumerate(styles)
        if style_key is not None
    ]
    return look, handles


MAX_PROFILE_RUNS = 10  # more runs than this in one figure: only the chosen ones (a long study)
PROFILE_PANELS = (  # title, which statistic, its stat (None: all of the kind), log axis
    ("‖dL/dW‖ (mean over epoch 1's steps)", "grad", None, True),
    ("activation std (epoch 1)", "act", "std", True),
    ("dead (ReLU) / saturated (sigmoid) fraction", "act", None, False),
)


def _profile_points(sweep: Sweep, run: RunRecord, kind: str, stat: str | None):
    """(layer index, first-epoch value) of one panel's statistic, finite values only."""
    if kind == "grad":
        points = by_layer(sweep, run, _weight_grad, stat)
    elif stat is None:  # the dead (ReLU) and saturated (sigmoid, tanh) fractions together
        points = [
            p for name in ("dead_frac", "sat_frac") for p in by_layer(sweep, run, _activation, name)
        ]
    else:
        points = by_layer(sweep, run, _activation, stat)
    return [(i, v) for i, v in points if math.isfinite(v)]


def layer_profile(
    sweep: Sweep,
    path: str | Path,
    color_key: str | None = None,
    style_key: str | None = None,
    runs: Sequence[RunRecord] | None = None,
) -> Path | None:
    """Three panels against the layer index, at the first epoch: weight-gradient norm, the
    activations' standard deviation, and the dead (ReLU) or saturated (sigmoid) fraction; one
    line per run of `runs` (default: all), colored by `color_key`'s value and styled by
    `style_key`'s (or a color per run, named, without a color key). Exact zeros (a zero
    initialization's gradients and activations) lie on the log axes' "exactly 0" floor."""
    runs = list(sweep.runs if runs is None else runs)
    if not any(by_layer(sweep, r, _weight_grad) for r in runs):
        return None
    look, handles = _style(sweep, runs, color_key, style_key)
    fig = new_figure(15, 4.6)
    axes = fig.subplots(1, 3)
    for ax, (title, kind, stat, log) in zip(axes, PROFILE_PANELS, strict=True):
        points = {run.run_id: _profile_points(sweep, run, kind, stat) for run in runs}
        floor = zero_floor(v for p in points.values() for _, v in p) if log else None
        for run in runs:
            if not points[run.run_id]:
                continue
            xs = [i for i, _ in points[run.run_id]]
            values = [v for _, v in points[run.run_id]]
            ys = on_floor(values, floor) if log else values
            color, style = look[run.run_id]
            ax.plot(xs, ys, style, color=color, marker="o", markersize=3)
            if run.state == "diverged":
                ax.plot(xs[-1], ys[-1], "x", color=DIVERGED, markersize=10, mew=2)
        if log:
            mark_zero_floor(ax, floor)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("layer (0 = first)")
        _layer_axis(ax, [i for p in points.values() for i, _ in p])
        ax.grid(alpha=0.3, which="both")
    if handles:
        legend_beside(axes[-1], handles)
    fig.suptitle("per layer, at the first epoch")
    return save_figure(fig, path)


def _layer_axis(ax, layers: Sequence[int]) -> None:
    """Whole layers only, each with its tick while they are few (even a single one)."""
    from matplotlib.ticker import MaxNLocator

    if not layers:
        return
    low, high = min(layers), max(layers)
    ax.set_xlim(low - 0.5, high + 0.5)
    if high - low <= 20:
        ax.set_xticks(range(low, high + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def depth_profile(
    sweep: Sweep, path: str | Path, depth_key: str = "model.hidden", line_key: str | None = None
) -> Path | None:
    """First-layer gradient norm (first epoch) against depth, and final val/acc against depth,
    one line per value of `line_key` (e.g. the activation)."""
    groups: dict[str, list[tuple[int, float, float]]] = {}
    for run in sweep.runs:
        depth = _depth(run.params.get(depth_key, ""))
        if depth is None:
            continue
        grad = first_value(sweep, run, grad_norm_key("dense_0/W", "mean"))
        acc = run.metrics.get("val/acc", math.nan)
        groups.setdefault(run.params.get(line_key, "") if line_key else "", []).append(
            (depth, grad, acc)
        )
    if not groups:
        return None
    fig = new_figure(11, 4.3)
    left, right = fig.subplots(1, 2)
    floor = zero_floor(g for points in groups.values() for _, g, _ in points)
    for name, points in sorted(groups.items()):
        points.sort()
        label = f"{_short(line_key)}={name}" if line_key else None
        depths = [d for d, _, _ in points]
        left.plot(depths, on_floor([g for _, g, _ in points], floor), "o-", label=label)
        right.plot(depths, [a for _, _, a in points], "o-", label=label)
    mark_zero_floor(left, floor)
    left.set_ylabel("first layer ‖dL/dW‖ (epoch 1)")
    left.set_title("gradient reaching the first layer", fontsize="medium")
    right.set_ylabel("final val/acc")
    right.set_title("what the network learned", fontsize="medium")
    for ax in (left, right):
        ax.set_xlabel("hidden layers")
        ax.grid(alpha=0.3, which="both")
        if line_key:
            ax.legend(fontsize="small")
    return save_figure(fig, path)


def train_val_curves(sweep: Sweep, path: str | Path, key: str = "loss") -> Path | None:
    """One panel per run: train/`key` and val/`key` per epoch (the gap is overfitting)."""
    runs = [r for r in sweep.runs if sweep.history(r, f"train/{key}")]
    if not runs:
        return None
    fig = new_figure(3.6 * len(runs) + 0.6, 3.8)
    axes = fig.subplots(1, len(runs), squeeze=False, sharey=True)[0]
    for ax, run in zip(axes, runs, strict=True):
        for split, style in (("train", "-"), ("val", "--")):
            steps = [s for s, v in sweep.history(run, f"{split}/{key}") if math.isfinite(v)]
            values = [v for _, v in sweep.history(run, f"{split}/{key}") if math.isfinite(v)]
            ax.plot(steps, values, style, label=f"{split}/{key}")
        panel_title(ax, run.name, 3.6, fontsize="small")
        epoch_axis(ax)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(key)
    axes[0].legend(fontsize="small")
    fig.suptitle(f"train vs validation {key}")
    return save_figure(fig, path)


def _depth(value: str) -> int | None:
    """``[32,32,32]`` → 3."""
    widths = re.findall(r"\d+", value)
    return len(widths) or None
