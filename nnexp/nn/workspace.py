"""Reusable output arrays, so the training loop does not allocate a new array per layer per step.

Only training-mode passes use a workspace: their outputs live until the next step. Inference
returns fresh arrays, because a caller may keep them (predictions, validation logits).
"""

from __future__ import annotations

from typing import Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

S = TypeVar("S", bound=np.generic)  # the arrays' scalar type: floats, or integer labels


class Workspace(Generic[S]):
    def __init__(self) -> None:
        self._arrays: dict[tuple[int, ...], NDArray[S]] = {}

    def get(self, shape: tuple[int, ...], dtype: np.dtype[S]) -> NDArray[S]:
        array = self._arrays.get(shape)
        if array is None or array.dtype != dtype:
            array = self._arrays[shape] = np.empty(shape, dtype=dtype)
        return array
