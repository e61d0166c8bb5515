"""Build a multilayer perceptron from a plain description (what a config holds)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from nnexp.nn.activations import make_activation
from nnexp.nn.flat import pack
from nnexp.nn.layers import BatchNorm1d, Dense, Dropout
from nnexp.nn.module import Module, Sequential
from nnexp.nn.residual import Residual, Skip


def mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    *,
    activation: str = "relu",
    init: str = "he_normal",
    init_kwargs: dict[str, float] | None = None,
    activation_kwargs: dict[str, Any] | None = None,
    dropout: float = 0.0,
    batch_norm: bool = False,
    residual: bool = False,
    dtype: DTypeLike = np.float32,
    seed: int = 0,
) -> Sequential:
    """Dense → [BatchNorm1d] → activation → [Dropout] per hidden layer, then a Dense output
    layer producing logits (the loss applies the output nonlinearity). `residual`: each hidden
    block adds its input to its output (`nnexp.nn.residual`: Skip … Residual, a projection
    where the width changes). No hidden layer (``hidden=[]``): one Dense layer, i.e. logistic,
    softmax or linear regression with the task's loss."""
    widths = [in_features, *hidden]
    if any(w < 1 for w in [*widths, out_features]):
        raise ValueError(f"layer widths must be >= 1, got {[*widths, out_features]}")
    rng = np.random.default_rng(seed)
    # Dropout draws from its own stream, so turning it on does not change the initial weights.
    dropout_rng = np.random.default_rng([seed, 1])
    modules: list[Module] = []
    for fan_in, fan_out in itertools.pairwise(widths):
        skip = Skip()
        if residual:
            modules.append(skip)
        modules.append(
            Dense(fan_in, fan_out, init=init, rng=rng, dtype=dtype, init_kwargs=init_kwargs)
        )
        if batch_norm:
            modules.append(BatchNorm1d(fan_out, dtype=dtype))
        # In place is safe here: the layer before owns the array, the one after owns the gradient.
        modules.append(make_activation(activation, inplace=True, **(activation_kwargs or {})))
        if dropout:
            modules.append(Dropout(dropout, rng=dropout_rng))
        if residual:  # a projection (widths differ) draws from `rng` after the block's Dense
            modules.append(
                Residual(
                    skip, fan_in, fan_out, init=init, rng=rng, dtype=dtype, init_kwargs=init_kwargs
                )
            )
    modules.append(
        Dense(widths[-1], out_features, init=init, rng=rng, dtype=dtype, init_kwargs=init_kwargs)
    )
    model = Sequential(modules)
    pack(list(model.parameters()))  # one vector: the optimizer updates it in one call
    return model
