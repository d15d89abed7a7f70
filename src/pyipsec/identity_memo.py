"""Values worked out from immutable objects, found again by the objects' identities.

A gateway derives the same few things again and again from the same configuration and
codec objects: the encoding of a shared transform list, the suite a proposal names,
the DPD timeout of a connection's settings.  A dictionary keyed by the objects' values
would hash them on every lookup (frozen dataclasses hash in Python, field by field);
keyed by their ``id()`` it costs one tuple.  An entry keeps its objects alive, so no
identity it is keyed by can be reused while it lives; equal objects that are not the
same ones only miss (and are added).  Bounded: the table is emptied when full.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["IdentityMemo"]

V = TypeVar("V")


class IdentityMemo(Generic[V]):
    """A bounded table of values by the identities of the objects they come from."""

    __slots__ = ("_limit", "_objects", "_values", "get")

    def __init__(self, limit: int = 1024) -> None:
        self._values: dict[tuple[int, ...], V] = {}
        self._objects: dict[tuple[int, ...], tuple[object, ...]] = {}
        self._limit = limit
        #: the value stored under a key (the ``id()`` of its objects), None if none: the
        #: dictionary's own ``get`` (no Python frame per lookup)
        self.get: Callable[[tuple[int, ...]], V | None] = self._values.get

    def put(self, key: tuple[int, ...], objects: tuple[object, ...], value: V) -> V:
        """Store ``value`` for ``objects`` (whose identities ``key`` lists); ``value``."""
        if len(self._values) >= self._limit:
            self.clear()
        self._values[key] = value
        self._objects[key] = objects
        return value

    def value(self, objects: tuple[Any, ...], compute: Callable[..., V]) -> V:
        """The value stored for ``objects`` (found by their identities);
        ``compute(*objects)`` stored first when there is none.  One Python frame more
        than :attr:`get`: for what is asked once per SA; the per-message paths use
        ``get`` and :meth:`put`."""
        key = tuple(map(id, objects))
        found = self._values.get(key)
        return self.put(key, objects, compute(*objects)) if found is None else found

    def clear(self) -> None:
        self._values.clear()
        self._objects.clear()

    def __len__(self) -> int:
        return len(self._values)
