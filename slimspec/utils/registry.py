"""One small registry type for families, criteria and datasets (names are unique)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> item; an unknown name raises ``error(message)`` listing the choices."""

    def __init__(self, kind: str, error: Callable[[str], Exception] = KeyError):
        self.kind, self._error = kind, error
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise self._error(f"unknown {self.kind} '{name}' (choose from {', '.join(self.names())})") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> dict[str, T]:
        return dict(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
