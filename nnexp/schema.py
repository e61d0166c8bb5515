"""Schema fields that carry their own rules, and the one checker that reads them.

A dataclass field states its default and what values it accepts in its metadata::

    lr: float = bounded(0.1, gt=0, finite=True)        # optimizer.lr=0.0: must be > 0
    momentum: float = bounded(0.0, ge=0, lt=1)          # ...: must be in [0, 1)
    dtype: str = choice("float32", ("float32", "float64"))  # ...: allowed: float32, float64
    hidden: list[int] = checked([16], _widths, "must be a non-empty list of ...")

and `check_fields` validates an object against its schema class field by field, raising the
caller's error with ``<key>=<value>: <rule>``. ``None`` is always accepted (an optional field's
"not set"). The config schemas (`nnexp.config`) and the dataset specs (`nnexp.data`) both use it.
A leaf module: it imports nothing of nnexp.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Collection, Mapping
from dataclasses import MISSING, field, fields, is_dataclass
from typing import Any

Fail = Callable[[str, Any, str], Exception]  # (key, value, rule) -> the error to raise

_BOUNDS = {
    "ge": (lambda v, lim: v >= lim, ">="),
    "gt": (lambda v, lim: v > lim, ">"),
    "le": (lambda v, lim: v <= lim, "<="),
    "lt": (lambda v, lim: v < lim, "<"),
}
FINITE = "must be a finite number"


def _field(default: Any, metadata: dict[str, Any]) -> Any:
    metadata = {k: v for k, v in metadata.items() if v is not None and v is not False}
    if isinstance(default, list):  # a mutable default: each instance gets its own copy
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def bounded(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    finite: bool = False,
    note: str | None = None,
) -> Any:
    """A numeric field with inclusive (``ge``, ``le``) or exclusive (``gt``, ``lt``) limits;
    ``finite``: inf and nan are refused; ``note`` follows the rule, e.g. ``(seconds)``."""
    return _field(default, {"ge": ge, "gt": gt, "le": le, "lt": lt, "finite": finite, "note": note})


def choice(default: Any, allowed: Collection[str]) -> Any:
    """A field whose value (or, for a list, each item) is one of ``allowed``."""
    return _field(default, {"choices": allowed})


def checked(default: Any, test: Callable[[Any], bool], rule: str) -> Any:
    """A field with a rule of its own: ``test(value)`` must hold; ``rule`` says what it wants."""
    return _field(default, {"test": test, "rule": rule})


def describe(limits: Mapping[str, Any], *, interval: bool = True) -> str:
    """The bounds of ``limits`` as a rule: ``in [0, 1)``, ``> 0``, ``>= 0 (seconds)``; with
    ``interval=False`` every bound spelled out, ``>= 0.0 and < 1.0``."""
    low = next((op for op in ("ge", "gt") if op in limits), None)
    high = next((op for op in ("le", "lt") if op in limits), None)
    if interval and low and high:
        rule = "in {}{}, {}{}".format(
            "[" if low == "ge" else "(",
            limits[low],
            limits[high],
            "]" if high == "le" else ")",
        )
    else:
        spelled = (f"{sym} {limits[op]}" for op, (_, sym) in _BOUNDS.items() if op in limits)
        rule = " and ".join(spelled)
    rule = f"must be {rule}"
    return f"{rule} {limits['note']}" if limits.get("note") else rule


def check_value(
    key: str, value: Any, rules: Mapping[str, Any], fail: Fail, *, interval: bool = True
) -> None:
    """Raise ``fail(key, value, rule)`` unless ``value`` keeps every rule in ``rules`` (a
    field's metadata). A list value with ``choices`` is checked item by item, as ``key[]``."""
    if value is None or not rules:
        return
    if rules.get("finite") and not (
        isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ):
        raise fail(key, value, FINITE)
    if "choices" in rules:
        allowed = rules["choices"]
        items, item_key = (value, f"{key}[]") if isinstance(value, list) else ([value], key)
        for item in items:
            if item not in allowed:
                raise fail(item_key, item, "allowed: " + ", ".join(sorted(allowed)))
    if not all(test(value, rules[op]) for op, (test, _) in _BOUNDS.items() if op in rules):
        raise fail(key, value, describe(rules, interval=interval))
    if "test" in rules and not rules["test"](value):
        raise fail(key, value, rules["rule"])


def check_fields(
    obj: Any, schema: type, fail: Fail, *, prefix: str = "", interval: bool = True
) -> None:
    """Check every field of the dataclass ``schema`` that declares rules, on ``obj`` (an
    instance, or anything with the same attributes), in declaration order."""
    for f in fields(schema):
        if f.metadata:
            check_value(prefix + f.name, getattr(obj, f.name), f.metadata, fail, interval=interval)


def unknown_keys(obj: Any, prefix: str = "") -> list[str]:
    """The dotted names of attributes a dataclass instance (and those in its fields) holds
    beyond its schema's fields: what ``+key=value`` forces into a structured config."""
    if not is_dataclass(obj) or isinstance(obj, type):
        return []
    names = {f.name for f in fields(obj)}
    extra = [prefix + k for k in vars(obj) if k not in names and not k.startswith("_")]
    for name in names:
        extra += unknown_keys(getattr(obj, name), f"{prefix}{name}.")
    return sorted(extra)


def default_of(schema: type, name: str) -> Any:
    """The default a dataclass field declares (its factory's value for a list)."""
    (f,) = (f for f in fields(schema) if f.name == name)
    if f.default is MISSING and f.default_factory is not MISSING:
        return f.default_factory()
    return f.default
