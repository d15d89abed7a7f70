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

from typing import Generic, TypeVar

__all__ = ["IdentityMemo"]

V = TypeVar("V")


class IdentityMemo(Generic[V]):
    """A bounded table of values by the identities of the objects they come from."""

    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int = 1024) -> None:
        self._entries: dict[tuple[int, ...], tuple[tuple[object, ...], V]] = {}
        self._limit = limit

    def get(self, key: tuple[int, ...]) -> V | None:
        """The value stored under ``key`` (the ``id()`` of its objects), None if none."""
        hit = self._entries.get(key)
        return None if hit is None else hit[1]

    def put(self, key: tuple[int, ...], objects: tuple[object, ...], value: V) -> V:
        """Store ``value`` for ``objects`` (whose identities ``key`` lists); ``value``."""
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[key] = (objects, value)
        return value

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
