"""Plots of a run, drawn from the trainer's per-epoch history alone:

- ``curves.png``: train/val loss, and train/val accuracy (or RMSE, ...) against epoch;
- ``grad_norms.png``: each layer's mean weight-gradient norm against epoch on a log axis,
  the plot that shows vanishing gradients in the early layers of a deep sigmoid network.

In the house style of `nnexp.tracking.plot_style`: a layout that never clips a label, legends
beside the axes, exact zeros drawn on a log axis's labelled floor (a zero-initialized network's
gradients are 0 at every epoch: its lines are there, on the floor). Non-finite values become
gaps, not errors.

`nnexp.tracking.plot_worker` draws them in a separate process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from nnexp.names import GRAD_NORM, parse_metric
from nnexp.tracking.plot_style import (
    legend_beside,
    mark_zero_floor,
    new_figure,
    on_floor,
    zero_floor,
)

History = Sequence[Mapping[str, float]]

# Second panel of curves.png: the first quality metric present, train and val.
_QUALITY_METRICS = ("acc", "rmse", "mae", "r2")


def make_plots(history: History, directory: str | Path) -> list[Path]:
    """Write the plots that `history` has data for into `directory`; return their paths."""
    if not history:
        return []
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = [_curves(history, directory / "curves.png")]
    grads = _grad_norms(history, directory / "grad_norms.png")
    if grads is not None:
        written.append(grads)
    return written


def _series(history: History, key: str) -> list[float]:
    """Values of `key` per epoch; missing or non-finite → NaN (a gap)."""
    out = []
    for row in history:
        try:
            value = float(row.get(key, math.nan))
        except (TypeError, ValueError):
            value = math.nan
        out.append(value if math.isfinite(value) else math.nan)
    return out


def _keys(history: History) -> list[str]:
    """All keys in first-appearance order (that is, network order for per-layer keys)."""
    return list(dict.fromkeys(key for row in history for key in row))


def _figure(ncols: int, width: float):
    fig = new_figure(width, 4)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _plot(
    ax, history: History, lines: Mapping[str, Sequence[float]], *, legend: bool = True
) -> None:
    """One line per ``label: values per epoch`` in `lines` (and their legend, in the axes)."""
    epochs = range(1, len(history) + 1)
    # A line needs two points: markers keep short runs (one epoch) visible.
    style = {"marker": "o", "markersize": 3} if len(history) <= 20 else {}
    for label, values in lines.items():
        ax.plot(epochs, values, label=label, **style)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3, which="both")
    if lines and legend:
        ax.legend(fontsize="small")


def curves_figure(history: History):
    """The figure of ``curves.png``: loss, and the first quality metric present, per epoch."""
    keys = _keys(history)
    quality = next((m for m in _QUALITY_METRICS if any(k.endswith(f"/{m}") for k in keys)), None)
    fig, axes = _figure(2 if quality else 1, 10 if quality else 5.5)
    losses = [k for k in ("train/loss", "val/loss") if k in keys]
    _plot(axes[0], history, {k: _series(history, k) for k in losses})
    axes[0].set_title("loss")
    axes[0].set_ylabel("loss")
    if quality:
        split_keys = [f"{split}/{quality}" for split in ("train", "val")]
        _plot(axes[1], history, {k: _series(history, k) for k in split_keys if k in keys})
        axes[1].set_title(quality)
        axes[1].set_ylabel(quality)
    return fig


def _curves(history: History, path: Path) -> Path:
    curves_figure(history).savefig(path, dpi=100)
    return path


def grad_norms_figure(history: History):
    """The figure of ``grad_norms.png`` (None without gradient norms in `history`)."""
    # Prefer the per-epoch mean (grad_norm/<layer>/W/mean); fall back to a plain per-layer key.
    layers: dict[str, str] = {}
    for key in _keys(history):
        parsed = parse_metric(key)
        if not parsed or parsed.family != GRAD_NORM or parsed.param != "W":
            continue
        if parsed.stat == "mean" or (parsed.stat is None and parsed.layer not in layers):
            layers[parsed.layer] = key
    if not layers:
        return None
    series = {layer: _series(history, key) for layer, key in layers.items()}
    floor = zero_floor(v for values in series.values() for v in values)
    fig, (ax,) = _figure(1, 7)
    lines = {layer: on_floor(values, floor) for layer, values in series.items()}
    _plot(ax, history, lines, legend=False)
    mark_zero_floor(ax, floor)
    legend_beside(ax)
    ax.set_ylabel("mean norm of dL/dW per step")
    ax.set_title("weight-gradient norm per layer (log scale)")
    return fig


def _grad_norms(history: History, path: Path) -> Path | None:
    fig = grad_norms_figure(history)
    if fig is None:
        return None
    fig.savefig(path, dpi=100)
    return path
