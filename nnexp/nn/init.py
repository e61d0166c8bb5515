"""Weight initializers by name. Shapes are (fan_in, fan_out), as in `Dense`.

Random numbers are drawn in float64 and then cast, so float32 and float64 runs of the same seed
start from the same weights (up to rounding) and can be compared.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import DTypeLike

from nnexp.nn.module import FloatArray
from nnexp.nn.registry import Registry

Shape = tuple[int, int]
FloatDType = np.dtype[np.floating]
# (shape, rng, dtype, **options such as std) -> weights; the options differ per initializer.
Initializer = Callable[..., FloatArray]
INITIALIZERS: Registry[Initializer] = Registry("init")


@INITIALIZERS.register("zeros")
def zeros(shape: Shape, rng: np.random.Generator, dtype: FloatDType) -> FloatArray:
    return np.zeros(shape, dtype=dtype)


@INITIALIZERS.register("normal")
def normal(
    shape: Shape, rng: np.random.Generator, dtype: FloatDType, std: float = 0.01
) -> FloatArray:
    """N(0, std²); 0.01 is the classic tutorial's choice (too small for deep nets)."""
    return (rng.standard_normal(shape) * std).astype(dtype)


@INITIALIZERS.register("uniform")
def uniform(
    shape: Shape, rng: np.random.Generator, dtype: FloatDType, limit: float = 0.05
) -> FloatArray:
    return rng.uniform(-limit, limit, shape).astype(dtype)


@INITIALIZERS.register("xavier_uniform", "xavier", "glorot")
def xavier_uniform(shape: Shape, rng: np.random.Generator, dtype: FloatDType) -> FloatArray:
    """Glorot & Bengio (2010): keeps activation variance for tanh/sigmoid-like units."""
    return uniform(shape, rng, dtype, limit=np.sqrt(6.0 / (shape[0] + shape[1])))


@INITIALIZERS.register("xavier_normal")
def xavier_normal(shape: Shape, rng: np.random.Generator, dtype: FloatDType) -> FloatArray:
    return normal(shape, rng, dtype, std=np.sqrt(2.0 / (shape[0] + shape[1])))


@INITIALIZERS.register("he_normal", "he", "kaiming")
def he_normal(shape: Shape, rng: np.random.Generator, dtype: FloatDType) -> FloatArray:
    """He et al. (2015): variance 2/fan_in compensates ReLU zeroing half its inputs."""
    return normal(shape, rng, dtype, std=np.sqrt(2.0 / shape[0]))


@INITIALIZERS.register("he_uniform")
def he_uniform(shape: Shape, rng: np.random.Generator, dtype: FloatDType) -> FloatArray:
    return uniform(shape, rng, dtype, limit=np.sqrt(6.0 / shape[0]))


@INITIALIZERS.register("lecun_normal")
def lecun_normal(shape: Shape, rng: np.random.Generator, dtype: FloatDType) -> FloatArray:
    return normal(shape, rng, dtype, std=np.sqrt(1.0 / shape[0]))


def initialize(
    name: str,
    shape: tuple[int, int],
    rng: np.random.Generator,
    dtype: DTypeLike = np.float32,
    **kwargs: float,
) -> FloatArray:
    """Weights of `shape` from the initializer `name` (kwargs such as ``std`` pass through)."""
    init = INITIALIZERS.lookup(name)
    try:
        return init(shape, rng, np.dtype(dtype), **kwargs)
    except TypeError as exc:
        raise ValueError(f"init {name!r} does not accept {sorted(kwargs)}: {exc}") from None
