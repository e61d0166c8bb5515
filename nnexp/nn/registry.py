"""Name → object tables. Every user-facing choice (activation, loss, init, optimizer, schedule)
is looked up here, so an unknown name fails with the list of what is allowed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """A dict that names what it holds (``"activation"``) in its error messages."""

    def __init__(self, what: str, entries: dict[str, T] | None = None) -> None:
        super().__init__(entries or {})
        self.what = what

    def lookup(self, name: str) -> T:
        try:
            return self[name]
        except (KeyError, TypeError):
            allowed = ", ".join(sorted(self))
            raise ValueError(f"unknown {self.what} {name!r}; allowed: {allowed}") from None

    def register(self, *names: str) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name", "alias")``."""

        def add(obj: T) -> T:
            for name in names:
                self[name] = obj
            return obj

        return add
