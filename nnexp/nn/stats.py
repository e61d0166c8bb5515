"""Training statistics that make failures visible: gradient norms, update-to-weight ratios,
activation statistics, and `StepStats`, which collects them per sampled step and summarizes
them per epoch (mean and max).

Each is a handful of reductions over arrays the step already has; the trainer decides how
often to compute them, so they cost nothing when off.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np

from nnexp.names import (
    OUTPUT,
    OUTPUT_STATS,
    WEIGHT_NORM,
    output_key,
    predicted_class_key,
    weight_norm_key,
)
from nnexp.nn.activations import Activation
from nnexp.nn.gradients import global_norm, norm
from nnexp.nn.module import FloatArray, Parameter, Targets


def grad_norm_keys(params: Sequence[Parameter]) -> list[str]:
    """``grad_norm/<layer>/<param>`` for each parameter, then ``grad_norm/global``."""
    return [f"grad_norm/{p.name}" for p in params] + ["grad_norm/global"]


def _weights(params: Sequence[Parameter]) -> list[int]:
    """Where the weight matrices (``decay``) sit in `params`."""
    return [i for i, p in enumerate(params) if p.decay]


def update_ratio_key(weight: Parameter) -> str:
    return f"update_ratio/{weight.name.rsplit('/', 1)[0]}"


def update_ratio(lr: float, grad_norm: float, weight_norm: float) -> float:
    """lr·‖∇W‖/‖W‖ for a weight matrix: the relative size of an SGD step (around 1e-3 is
    healthy; 1e-6 is stuck; 1e-1 and up is exploding)."""
    return lr * grad_norm / (weight_norm + 1e-12)


def activation_keys(layer: Activation) -> list[str]:
    """The statistics `activation_values` returns for this layer, in order: ``act/<layer>/mean``,
    ``/std``, ``/dead_frac`` (units never positive in the batch: `Activation.counts_dead`) and
    ``/sat_frac`` (outputs where the derivative is nearly zero: `Activation.saturation`)."""
    prefix = f"act/{layer.name}"
    keys = [f"{prefix}/mean", f"{prefix}/std"]
    if layer.counts_dead:
        keys.append(f"{prefix}/dead_frac")
    if layer.saturation is not None:
        keys.append(f"{prefix}/sat_frac")
    return keys


def output_keys(classes: int) -> list[str]:
    """``output/min``, ``/max``, ``/mean`` of the logits, then for `classes` > 0 (a classifier)
    ``output/class_<k>``: the fraction of the batch predicted as class k (a collapse onto one
    class shows as a fraction near 1)."""
    return [output_key(s) for s in OUTPUT_STATS] + [predicted_class_key(k) for k in range(classes)]


def output_values(logits: FloatArray, predicted: Targets | None, classes: int) -> list[float]:
    """Min, max and mean of `logits`, then the predicted classes' histogram as fractions."""
    # The ufuncs' reductions directly: `ndarray.mean` costs more in Python than in arithmetic
    # at a small model's batch sizes. Same values as min/max/mean: a pairwise sum in the
    # logits' dtype, then /n (float16 sums in float32, as NumPy's mean does).
    flat = logits.reshape(-1)
    wide = np.float32 if flat.dtype == np.float16 else None
    total = np.add.reduce(flat, dtype=wide) / flat.size
    values = [
        float(np.minimum.reduce(flat)),
        float(np.maximum.reduce(flat)),
        float(flat.dtype.type(total)),
    ]
    if classes:
        assert predicted is not None, "a classifier's output statistics need its predictions"
        labels = predicted.reshape(-1).astype(np.intp, copy=False)
        counts = np.bincount(labels, minlength=classes)[:classes]
        values += (counts / predicted.size).tolist()
    return values


def activation_values(layer: Activation, y: FloatArray) -> list[float]:
    """Mean, std, [dead fraction], [saturated fraction] of a layer's output `y` (batch, units).

    Mean and std come from the column sums and one BLAS dot (E[y²] - E[y]², clamped at 0)
    instead of NumPy's two-pass std with its temporaries: activations are O(1) with spread of
    the same order, so the cancellation this risks stays far below what the plots can show.
    A unit is dead in this batch if it is never positive; for outputs that cannot be negative
    (ReLU) that is a column sum of 0, so the column sums serve the mean and the dead count."""
    flat = y.reshape(-1)
    n = flat.size
    column_sums = np.add.reduce(y, axis=0)
    mean = float(np.add.reduce(column_sums)) / n
    values = [mean, math.sqrt(max(float(np.vdot(flat, flat)) / n - mean * mean, 0.0))]
    if layer.counts_dead:
        units = y.shape[1]
        if layer.nonnegative:  # a column sum of 0 (not NaN) is a dead unit: one call fewer
            values.append((units - np.count_nonzero(column_sums)) / units)
        else:
            values.append(np.count_nonzero(np.maximum.reduce(y, axis=0) <= 0) / units)
    if layer.saturation is not None:
        lo, hi = layer.saturation
        values.append(np.count_nonzero((y < lo) | (y > hi)) / n)
    return values


class StepStats:
    """The statistics of every sampled step of an epoch, summarized at its end: gradient norms
    as ``<key>/mean`` and ``<key>/max``; update ratios, activation statistics and weight norms
    as means; the output's ``min`` as the epoch's minimum, its ``max`` as the maximum, the rest
    (its mean, the predicted-class fractions) as means. `classes`: a classifier's class count
    (0 for regression: no class histogram).

    The keys are fixed once, and each step's values go into one vector that is added to running
    sums and maxima, so the bookkeeping per step is a few vector operations however many
    statistics are logged (the values themselves are one reduction each)."""

    def __init__(
        self,
        params: Sequence[Parameter],
        activations: Sequence[Activation],
        want: Collection[str],
        classes: int = 0,
    ) -> None:
        self.params = list(params)
        self.want = set(want)
        # Indices of the weight matrices in `params` (their norms come in that order).
        self.weights = _weights(self.params) if "update_ratio" in want else []
        self.normed = _weights(self.params) if WEIGHT_NORM in want else []
        self.activations = (
            [a for a in activations if a.records_output] if "activations" in want else []
        )
        self.classes = classes
        self.grad_keys = grad_norm_keys(self.params) if "grad_norm" in want else []
        self.other_keys = [update_ratio_key(self.params[i]) for i in self.weights]
        for layer in self.activations:
            self.other_keys += activation_keys(layer)
        # A row: gradient norms, update ratios | activations | weight norms, output statistics.
        self._activations_from = len(self.grad_keys) + len(self.weights)
        self._activations_to = len(self.grad_keys) + len(self.other_keys)
        self.other_keys += [weight_norm_key(_layer(self.params[i])) for i in self.normed]
        self.output = OUTPUT in want
        if self.output:
            self.other_keys += output_keys(classes)
        size = len(self.grad_keys) + len(self.other_keys)
        self._activations_ready = False
        self._row = np.zeros(size)
        self._sum = np.zeros(size)
        self._max = np.full(size, -np.inf)
        self._min = np.full(size, np.inf)
        self._count = 0

    def __bool__(self) -> bool:
        return bool(self.grad_keys or self.other_keys)

    def sample_activations(self) -> None:
        """The activation statistics of the step's forward pass. `sample` computes them if this
        was not called, but right after the forward pass is the time: the outputs are still in
        cache then, and after the backward pass and the update they are not (4x slower)."""
        values: list[float] = []
        for layer in self.activations:
            y = layer.output
            assert y is not None, f"{layer.name}: no training forward to sample"
            values += activation_values(layer, y)
        self._row[self._activations_from : self._activations_to] = values
        self._activations_ready = True

    def sample(
        self,
        norms: Sequence[float],
        lr: float,
        value_norms: Sequence[float] | None = None,
        logits: FloatArray | None = None,
        predicted: Targets | None = None,
    ) -> None:
        """Record one step: `norms` are the parameters' gradient norms (before clipping),
        `value_norms` their values' norms after the update (computed here if not given),
        `logits` the step's output and `predicted` a classifier's predicted classes."""
        if not self._activations_ready:
            self.sample_activations()
        self._activations_ready = False
        if self.weights or self.normed:
            value_norms = value_norms or [norm(p.value) for p in self.params]
        values: list[float] = []
        if self.grad_keys:
            values += norms
            values.append(global_norm(norms))
        for i in self.weights:
            assert value_norms is not None
            values.append(update_ratio(lr, norms[i], value_norms[i]))
        row = self._row
        row[: self._activations_from] = values
        tail = [value_norms[i] for i in self.normed] if value_norms is not None else []
        if self.output:
            assert logits is not None, "the output statistics need the step's logits"
            tail += output_values(logits, predicted, self.classes)
        row[self._activations_to :] = tail
        self._sum += row
        np.maximum(self._max, row, out=self._max)  # propagates NaN: keeps it visible
        np.minimum(self._min, row, out=self._min)
        self._count += 1

    def summary(self) -> dict[str, float]:
        if not self._count:
            return {}
        means = (self._sum / self._count).tolist()
        maxima = self._max.tolist()
        out = {}
        for i, key in enumerate(self.grad_keys):
            out[f"{key}/mean"], out[f"{key}/max"] = means[i], maxima[i]
        offset = len(self.grad_keys)
        out |= dict(zip(self.other_keys, means[offset:], strict=True))
        if self.output:  # the epoch's range, not the mean of the steps' ranges
            start = len(self.grad_keys) + self.other_keys.index(output_key("min"))
            out[output_key("min")] = float(self._min[start])
            out[output_key("max")] = maxima[start + 1]
        return out


def _layer(param: Parameter) -> str:
    """``dense_0`` of ``dense_0/W``."""
    return param.name.rsplit("/", 1)[0]
