"""One contiguous vector for all parameters (and one for all gradients).

`pack` moves a model's parameter arrays into a single buffer and makes each `Parameter.value`
(and `.grad`) a view of its slice. Nothing about the layers changes — they still see one array
per parameter — but whatever treats the parameters as a whole can do it in one NumPy call
instead of one per parameter: the optimizer's update, the NaN/Inf check, the global gradient
norm. On small networks (two moons, 2-16-2) that per-parameter Python overhead is most of a
step, so this is a speed measure: `flat_view` tells callers whether they can use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnexp.nn.module import Parameter


def pack(params: Sequence[Parameter]) -> None:
    """Make every parameter's value and grad a view into one contiguous buffer each, in order.
    Call it when the model is built, before anything holds on to the old arrays."""
    if not params:
        return
    dtypes = {p.value.dtype for p in params}
    if len(dtypes) != 1:
        raise ValueError(f"cannot pack parameters of several dtypes: {sorted(map(str, dtypes))}")
    total = sum(p.value.size for p in params)
    values = np.empty(total, dtype=dtypes.pop())
    grads = np.zeros_like(values)
    offset = 0
    for p in params:
        end = offset + p.value.size
        view = values[offset:end].reshape(p.value.shape)
        view[...] = p.value
        p.value = view
        p.grad = grads[offset:end].reshape(p.value.shape)
        offset = end


def flat_view(arrays: Sequence[np.ndarray]) -> np.ndarray | None:
    """The 1-D buffer that `arrays` tile exactly, in order (as `pack` leaves them), else None."""
    if not arrays:
        return None
    base = arrays[0].base
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    address = base.__array_interface__["data"][0]
    for a in arrays:
        if a.base is not base or not a.flags.c_contiguous:
            return None
        if a.__array_interface__["data"][0] != address:
            return None
        address += a.nbytes
    if address != base.__array_interface__["data"][0] + base.nbytes:
        return None
    return base
