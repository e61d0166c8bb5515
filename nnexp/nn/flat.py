"""One contiguous vector for all parameters (and one for all gradients).

`pack` moves a model's parameter arrays into a single buffer and makes each `Parameter.value`
(and `.grad`) a view of its slice. Nothing about the layers changes — they still see one array
per parameter — but whatever treats the parameters as a whole can do it in one NumPy call
instead of one per parameter: the optimizer's update, the NaN/Inf check, the global gradient
norm. On small networks (two moons, 2-16-2) that per-parameter Python overhead is most of a
step, so this is a speed measure: `flat_view` tells callers whether they can use it, and
`slot_arrays` lays out an optimizer's state to match.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnexp.nn.module import FloatArray, Parameter


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


def flat_view(arrays: Sequence[FloatArray]) -> FloatArray | None:
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


Group = tuple[Parameter, dict[str, FloatArray], FloatArray]  # parameter, its slots, scratch


def slot_arrays(
    params: Sequence[Parameter], slots: Sequence[str], chunk: int
) -> tuple[dict[str, dict[str, FloatArray]], list[Group]]:
    """An optimizer's state, zeroed, and the groups its update runs on: ``(state, groups)``.

    ``state[p.name][slot]`` is an array shaped like ``p.value`` (what `state_dict` saves). Each
    group ``(parameter, {slot: array}, scratch)`` is one call of the update rule. Unpacked
    parameters get one group each. Packed ones (`pack`) get the packed vector, cut into pieces
    of at most `chunk` elements, with each slot one vector too (``state`` holds views of it):
    an update makes several passes over its arrays (Adam twelve), and when one piece of all of
    them fits in a core's L2 cache only the first pass goes to memory (Adam's step ~1/4 faster
    on the 235k-weight benchmark MLP). Small models are one piece; the arithmetic is the same.
    """
    values = flat_view([p.value for p in params])
    grads = flat_view([p.grad for p in params])
    if values is None or grads is None:
        state = {p.name: {s: np.zeros_like(p.value) for s in slots} for p in params}
        return state, [(p, state[p.name], np.empty_like(p.value)) for p in params]
    vectors = {s: np.zeros_like(values) for s in slots}
    groups = _pieces(values, grads, vectors, chunk)
    return _per_parameter(params, vectors), groups


def _pieces(
    values: FloatArray, grads: FloatArray, vectors: dict[str, FloatArray], chunk: int
) -> list[Group]:
    """The packed vector and its slot vectors cut into the same pieces, one scratch for all."""
    pieces = _chunks(values.size, chunk)
    scratch = np.empty(max(b - a for a, b in pieces), dtype=values.dtype)
    return [
        (
            Parameter("all", values[a:b], grad=grads[a:b]),
            {s: vector[a:b] for s, vector in vectors.items()},
            scratch[: b - a],
        )
        for a, b in pieces
    ]


def _per_parameter(
    params: Sequence[Parameter], vectors: dict[str, FloatArray]
) -> dict[str, dict[str, FloatArray]]:
    """``{p.name: {slot: view}}``: each parameter's slice of each slot vector, in its shape."""
    state = {}
    offset = 0
    for p in params:
        end = offset + p.value.size
        state[p.name] = {
            s: vector[offset:end].reshape(p.value.shape) for s, vector in vectors.items()
        }
        offset = end
    return state


def _chunks(size: int, chunk: int) -> list[tuple[int, int]]:
    """[start, end) ranges covering `size` in as few near-equal pieces as `chunk` allows, each
    starting at a multiple of 16 elements (cache-line aligned in the packed vector)."""
    count = -(-size // chunk)
    step = -(-size // count)
    step = -(-step // 16) * 16
    return [(a, min(a + step, size)) for a in range(0, size, step)]
