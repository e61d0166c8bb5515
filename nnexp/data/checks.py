"""Generic spec validation: every field's type, and the limits declared in its metadata (read
by `nnexp.schema`'s checker, the one the config schemas use too).

Reads the schema from the spec *class*, and values with ``getattr``, so it accepts a spec
dataclass or anything with the same attributes (e.g. an OmegaConf node) alike.
"""

from __future__ import annotations

import math
import numbers
import types
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, Union, get_args, get_origin

from nnexp.data.errors import DatasetError, bad
from nnexp.schema import FINITE, check_value

_MISSING = object()


def check_fields(spec: Any, schema: type) -> None:
    """Raise DatasetError for the first field of ``spec`` that is missing, mistyped or out of
    the bounds declared on ``schema``'s fields."""
    for f in fields(schema):
        value = getattr(spec, f.name, _MISSING)
        if value is _MISSING:
            raise DatasetError(
                f"dataset.{f.name} is missing: dataset {schema.__name__} needs it "
                f"(default {f.default!r})"
            )
        check_type(f.name, value, f.type)
        # every bound spelled out: dataset.val_fraction=0.0: must be > 0.0 and < 1.0
        check_value(f.name, value, f.metadata, bad, interval=False)


def check_type(key: str, value: Any, annotation: Any) -> None:
    """Enforce the annotation (int, float, bool, str, list[...] and ``X | None``) for specs built
    in Python; through Hydra, OmegaConf has already done this."""
    if get_origin(annotation) in (Union, types.UnionType):
        if value is None:
            return
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if get_origin(annotation) is list:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise bad(key, value, "must be a list")
        (item_type,) = get_args(annotation)
        for i, item in enumerate(value):
            check_type(f"{key}[{i}]", item, item_type)
        return
    ok, what = _SCALARS[annotation](value)
    if not ok:
        raise bad(key, value, f"must be {what}")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


_SCALARS = {
    int: lambda v: (isinstance(v, numbers.Integral) and not isinstance(v, bool), "an integer"),
    float: lambda v: (_is_number(v) and math.isfinite(v), FINITE.removeprefix("must be ")),
    bool: lambda v: (isinstance(v, bool), "true or false"),
    str: lambda v: (isinstance(v, str), "a string"),
}
