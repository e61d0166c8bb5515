"""Plots across layers and depths, for the experiments of ``experiments/``
(`nnexp.report.experiments`):

- ``layer_profile``: per run, each layer's weight-gradient norm and activation statistics at the
  first epoch, against the layer's index — where an initialization's symmetry, vanishing or
  exploding shows before training has had a chance to repair (or hide) it;
- ``depth_profile``: the first layer's gradient norm against the network's depth, one line per
  activation (vanishing gradients as depth grows);
- ``train_val_curves``: one panel per run with its training and validation loss (overfitting).

Drawn from a `Sweep` (the tracking store) alone, in the house style of `nnexp.report.figures`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

from nnexp.names import ACT, GRAD_NORM, MetricKey, grad_norm_key, parse_metric
from nnexp.report.collect import RunRecord, Sweep
from nnexp.report.figures import (
    DIVERGED,
    STYLES,
    epoch_axis,
    new_figure,
    ordered_values,
    save_figure,
)

FLOOR = 1e-12  # exact zeros (zeros init) drawn here on log axes, on a labelled line


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


def _style(sweep: Sweep, color_key: str | None, style_key: str | None):
    """Each run's (color, line style) from its swept values, and the legend entries."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    cmap = colormaps["tab10"]
    colors = ordered_values(sweep, color_key) if color_key else []
    styles = ordered_values(sweep, style_key) if style_key else []
    look = {}
    for i, run in enumerate(sweep.runs):
        c = colors.index(run.params[color_key]) if color_key in run.params else i
        s = styles.index(run.params[style_key]) % len(STYLES) if style_key in run.params else 0
        look[run.run_id] = (cmap(c % 10), STYLES[s])
    handles = [Line2D([], [], color=cmap(i % 10), label=v) for i, v in enumerate(colors)]
    handles += [
        Line2D([], [], color="gray", linestyle=STYLES[i % len(STYLES)], label=v)
        for i, v in enumerate(styles)
    ]
    return look, handles


def layer_profile(
    sweep: Sweep, path: str | Path, color_key: str | None = None, style_key: str | None = None
) -> Path | None:
    """Three panels against the layer index, at the first epoch: weight-gradient norm, the
    activations' standard deviation, and the dead (ReLU) or saturated (sigmoid) fraction."""
    panels = [
        ("‖dL/dW‖ (mean over epoch 1's steps)", _weight_grad, None, True),
        ("activation std (epoch 1)", _activation, "std", True),
        ("dead (ReLU) / saturated (sigmoid) fraction", _activation, None, False),
    ]
    if not any(by_layer(sweep, r, _weight_grad) for r in sweep.runs):
        return None
    look, handles = _style(sweep, color_key, style_key)
    fig = new_figure(15, 4.6)
    axes = fig.subplots(1, 3)
    for ax, (title, kind, stat, log) in zip(axes, panels, strict=True):
        for run in sweep.runs:
            if stat is None and kind is _activation:
                points = [
                    p
                    for name in ("dead_frac", "sat_frac")
                    for p in by_layer(sweep, run, kind, name)
                ]
            else:
                points = by_layer(sweep, run, kind, stat)
            points = [(i, v) for i, v in points if math.isfinite(v)]
            if not points:
                continue
            xs = [i for i, _ in points]
            ys = [max(v, FLOOR) if log else v for _, v in points]
            color, style = look[run.run_id]
            ax.plot(xs, ys, style, color=color, marker="o", markersize=3)
            if run.state == "diverged":
                ax.plot(xs[-1], ys[-1], "x", color=DIVERGED, markersize=10, mew=2)
        if log:
            ax.set_yscale("log")
            low, _ = ax.get_ylim()
            if low <= FLOOR * 10:
                ax.axhline(FLOOR, color="gray", linewidth=0.8, linestyle=":")
                ax.text(0, FLOOR, " exactly 0", va="bottom", fontsize="x-small", color="gray")
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("layer (0 = first)")
        ax.grid(alpha=0.3, which="both")
    if handles:
        axes[-1].legend(handles=handles, fontsize="x-small")
    fig.suptitle("per layer, at the first epoch")
    return save_figure(fig, path)


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
    for name, points in sorted(groups.items()):
        points.sort()
        label = f"{line_key.rsplit('.', 1)[-1]}={name}" if line_key else None
        depths = [d for d, _, _ in points]
        left.plot(depths, [max(g, FLOOR) for _, g, _ in points], "o-", label=label)
        right.plot(depths, [a for _, _, a in points], "o-", label=label)
    left.set_yscale("log")
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
        ax.set_title(run.name, fontsize="small")
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
