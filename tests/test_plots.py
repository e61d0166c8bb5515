"""Plots that don't mislead: every figure nnexp draws — a run's own (`nnexp.tracking.plots`) and
a sweep report's (`nnexp.report.figures`, `nnexp.report.layers`) — keeps every label inside the
figure (nothing clipped, whatever the layer names and the values), and draws exact zeros on a
log axis on its labelled floor instead of dropping them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import memory_sweep

from nnexp.tracking.plot_style import ALL_ZERO_FLOOR, ZERO_LABEL, on_floor, zero_floor

# Long layer names (a residual block's projection, say) and values over 17 decades.
LONG_LAYERS = [f"residual_block_with_projection_{i}" for i in range(12)]
EPOCHS = 30


def _unclipped(fig) -> list[str]:
    """Render `fig`; the texts (tick labels drawn, axis labels, titles, legends, notes) whose
    window extent leaves the figure's box, described. Empty when nothing is clipped."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = fig.bbox
    tick_labels = set()
    boxes = []
    for ax in fig.get_axes():
        for axis in (ax.xaxis, ax.yaxis):
            ticks = axis.get_major_ticks() + axis.get_minor_ticks()
            tick_labels |= {t.label1 for t in ticks} | {t.label2 for t in ticks}
            # The tick labels actually drawn (those inside the view), the axis label, offset.
            extent = axis.get_tightbbox(renderer)
            if extent is not None:
                boxes.append((f"{axis.axis_name} axis of {ax.get_title()!r}", extent))
        legend = ax.get_legend()
        if legend is not None:
            boxes.append((f"legend of {ax.get_title()!r}", legend.get_window_extent(renderer)))
    for text in fig.findobj(Text):
        if text in tick_labels or not text.get_visible() or not text.get_text().strip():
            continue
        boxes.append((repr(text.get_text()), text.get_window_extent(renderer)))
    assert len(boxes) > 5  # titles, labels, legends: something was measured
    tolerance = 1.0  # pixels: rounding of the text's extent
    return [
        f"{name}: {extent.bounds} outside {box.bounds}"
        for name, extent in boxes
        if extent.x0 < box.x0 - tolerance
        or extent.y0 < box.y0 - tolerance
        or extent.x1 > box.x1 + tolerance
        or extent.y1 > box.y1 + tolerance
    ]


def _history(epochs: int = EPOCHS, layers=LONG_LAYERS, zero_layer: int | None = 0):
    """A run's history: loss in the millions (regression, raw units), gradient norms from 1e-12
    (first layer) to 1e5 (last), and one layer whose gradient is exactly 0 at every epoch."""
    rows = []
    for e in range(1, epochs + 1):
        row = {"train/loss": 3e6 / e, "val/loss": 4e6 / e, "train/rmse": 2e3 / e}
        row["val/rmse"] = 2.5e3 / e
        for i, layer in enumerate(layers):
            grad = 0.0 if i == zero_layer else 10.0 ** (i * 17 / (len(layers) - 1) - 12)
            row[f"grad_norm/{layer}/W/mean"] = grad
            row[f"grad_norm/{layer}/W/max"] = 2 * grad
        rows.append(row)
    return rows


# --- the run's own plots ------------------------------------------------------------------------


def test_a_runs_plots_keep_every_label_inside_the_figure():
    from nnexp.tracking.plots import curves_figure, grad_norms_figure

    history = _history()
    for fig in (curves_figure(history), grad_norms_figure(history)):
        assert _unclipped(fig) == []


def test_a_runs_grad_norms_draw_exact_zeros_on_the_labelled_floor_at_every_epoch():
    """A zero-initialized layer's gradient is 0 at every epoch: its line is drawn at each of
    them, on the floor a decade below the smallest positive value, marked "exactly 0"."""
    from nnexp.tracking.plots import grad_norms_figure

    (ax,) = grad_norms_figure(_history()).get_axes()
    lines = {line.get_label(): line for line in ax.get_lines()}
    zero = lines[LONG_LAYERS[0]]
    smallest = 10.0 ** (17 / 11 - 12)  # the second layer's gradient
    floor = 10.0 ** (math.floor(math.log10(smallest)) - 1)
    assert list(zero.get_xdata()) == list(range(1, EPOCHS + 1))
    np.testing.assert_allclose(zero.get_ydata(), [floor] * EPOCHS)
    (marker,) = [line for line in ax.get_lines() if line.get_label() == "_" + ZERO_LABEL]
    assert set(marker.get_ydata()) == {floor} and marker.get_linestyle() == ":"
    assert any(t.get_text().strip() == ZERO_LABEL for t in ax.texts)
    assert ax.get_yscale() == "log" and ax.get_ylim()[0] < floor


def test_all_zero_gradients_are_a_line_not_an_empty_plot():
    from nnexp.tracking.plots import grad_norms_figure

    history = [{k: 0.0 if "grad" in k else v for k, v in row.items()} for row in _history()]
    (ax,) = grad_norms_figure(history).get_axes()
    for layer in LONG_LAYERS:
        (line,) = [line for line in ax.get_lines() if line.get_label() == layer]
        np.testing.assert_allclose(line.get_ydata(), [ALL_ZERO_FLOOR] * EPOCHS)
    # Nothing but zeros: the axis's one tick reads 0, not a power of ten.
    assert list(ax.get_yticks()) == [ALL_ZERO_FLOOR]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0"]
    assert ax.yaxis.get_minorticklocs().size == 0


def test_no_zero_no_floor():
    from nnexp.tracking.plots import grad_norms_figure

    (ax,) = grad_norms_figure(_history(zero_layer=None)).get_axes()
    assert [line.get_label() for line in ax.get_lines()] == LONG_LAYERS
    assert not ax.texts


@pytest.mark.parametrize(
    ("values", "floor"),
    [
        ([0.0, 3e-5, 2.0], 1e-6),  # a decade below the smallest positive value's decade
        ([0.0, 1e-3], 1e-4),
        ([0.0, 0.0], ALL_ZERO_FLOOR),
        ([1.0, 2.0], None),  # no zero: no floor
        ([math.nan, math.inf, 0.5], None),  # gaps are not zeros
        ([0.0, math.nan, 5e-13], 1e-14),  # a positive value below 1e-12 stays above the floor
    ],
)
def test_the_floor_lies_below_every_positive_value(values, floor):
    assert zero_floor(values) == pytest.approx(floor) if floor else zero_floor(values) is None
    lifted = on_floor(values, zero_floor(values))
    for before, after in zip(values, lifted, strict=True):
        if before == 0:
            assert after == zero_floor(values) < min(v for v in values if v > 0 or v == 0) + 1
        elif math.isfinite(before):
            assert after == before
        else:
            assert math.isnan(after)


# --- the sweep report's figures -----------------------------------------------------------------


def _sweep():
    """Three runs with long swept values and long layer names: a zero init (every weight
    gradient, activation std and weight norm exactly 0), a healthy one, a diverged one."""
    from nnexp.report.collect import RunRecord

    inits = ("zeros_but_with_a_very_long_name", "he_normal_fan_in", "normal_scale_1e30")
    runs, histories = [], {}
    for job, init in enumerate(inits):
        run_id = f"run{job}"
        scale = 0.0 if job == 0 else 10.0 ** (6 * job - 9)
        series = {"val/loss": [4e6 / e for e in range(1, EPOCHS + 1)]}
        for i, layer in enumerate(LONG_LAYERS):
            series[f"grad_norm/{layer}/W/mean"] = [scale * 10.0**i] * EPOCHS
            series[f"weight_norm/{layer}"] = [scale * 3.0] * EPOCHS
            series[f"act/relu_{i}/std"] = [scale] * EPOCHS
            series[f"act/relu_{i}/dead_frac"] = [1.0 if job == 0 else 0.1] * EPOCHS
        series |= {"output/min": [-1e6] * EPOCHS, "output/mean": [0.0] * EPOCHS}
        series["output/max"] = [1e6] * EPOCHS
        if job == 2:
            series = {k: [*v[:3], math.nan] for k, v in series.items()}
        histories |= {(run_id, k): v for k, v in series.items()}
        runs.append(
            RunRecord(
                run_id=run_id,
                # As long as a run named after four swept overrides.
                name=f"#{job:02d} init={init} lr=0.0001234 hidden=[256,256,256] act=leaky_relu",
                job=job,
                status="FAILED" if job == 2 else "FINISHED",
                diverged=job == 2,
                error="",
                params={"model.init": init, "optimizer.lr": "0.0001234"},
                metrics={k: v[-1] for k, v in series.items()},
                objective=series["val/loss"][-1],
            )
        )
    return memory_sweep(runs, histories, ["model.init", "optimizer.lr"])


def test_the_reports_figures_keep_every_label_inside_the_figure(tmp_path, drawn):
    from nnexp.report import figures, layers

    sweep = _sweep()
    runs = sweep.runs
    made = [
        figures.loss_curves(sweep, tmp_path / "a.png"),
        figures.heatmap(sweep, tmp_path / "b.png"),
        figures.grad_norm_curves(sweep, runs, tmp_path / "c.png"),
        figures.weights_output_curves(sweep, runs, tmp_path / "d.png"),
        layers.layer_profile(sweep, tmp_path / "e.png", "model.init", "optimizer.lr"),
        layers.layer_profile(sweep, tmp_path / "f.png", runs=runs),  # a color per run, named
        layers.train_val_curves(sweep, tmp_path / "g.png", "loss"),
    ]
    assert None not in made[:-1]
    for fig in drawn:
        assert _unclipped(fig) == [], fig.get_suptitle()


def test_the_reports_gradient_and_weight_norms_of_a_zero_init_run_lie_on_the_floor(tmp_path, drawn):
    from nnexp.report import figures

    sweep = _sweep()
    zeros, healthy = sweep.runs[:2]
    figures.grad_norm_curves(sweep, [zeros, healthy], tmp_path / "grad_norms.png")
    figures.weights_output_curves(sweep, [zeros, healthy], tmp_path / "weights_output.png")
    grads, weights = drawn
    floor = 1e-4  # a decade below the healthy run's smallest gradient, 1e-3
    zero_panel = grads.get_axes()[0]
    for layer in LONG_LAYERS:
        (line,) = [line for line in zero_panel.get_lines() if line.get_label() == layer]
        assert list(line.get_xdata()) == list(range(1, EPOCHS + 1))
        np.testing.assert_allclose(line.get_ydata(), [floor] * EPOCHS)
    for ax in grads.get_axes():  # the panels share their y axis and its floor
        assert any(t.get_text().strip() == ZERO_LABEL for t in ax.texts)
        low, high = ax.get_ylim()  # which shows the healthy run's gradients too (up to 1e8)
        assert low < floor and high >= 1e8
        assert "0" not in [t.get_text() for t in ax.get_yticklabels()]
    # The zero run alone: nothing but zeros, one tick reading 0.
    figures.grad_norm_curves(sweep, [zeros], tmp_path / "alone.png")
    (alone,) = drawn[-1].get_axes()
    assert [t.get_text() for t in alone.get_yticklabels()] == ["0"]
    top = weights.get_axes()[0]  # the zero run's weight norms: its own floor
    lines = [line for line in top.get_lines() if line.get_label() in LONG_LAYERS]
    assert len(lines) == len(LONG_LAYERS)
    assert all(list(line.get_xdata()) == list(range(1, EPOCHS + 1)) for line in lines)
    assert any(t.get_text().strip() == ZERO_LABEL for t in top.texts)
