"""Tests of :mod:`pyipsec.crypto`.  Vector files live in ``tests/vectors``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def load_vectors(name: str) -> Any:
    """The parsed JSON vector file ``tests/vectors/<name>``."""
    with (VECTORS / name).open(encoding="utf-8") as f:
        return json.load(f)


def h(text: str) -> bytes:
    """Hex to bytes."""
    return bytes.fromhex(text)
