"""Suite-wide: the tests that only make sense with an interpreted core, and a refusal to
test a stale compiled one (``scripts/compile-core``, ``pyipsec.build_info``)."""

from __future__ import annotations

import pytest

from pyipsec import build_info

INTERPRETED_ONLY = (
    "replaces a function or method of the protocol core, which its compiled modules call "
    "directly (mypyc): run it with the interpreted core"
)


def pytest_configure(config: pytest.Config) -> None:
    stale = build_info.stale_extensions()
    if stale:
        raise pytest.UsageError(
            f"the compiled core is older than {', '.join(stale)}: "
            "run scripts/compile-core (or scripts/compile-core --clean)"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not build_info.core_compiled():
        return
    skip = pytest.mark.skip(reason=INTERPRETED_ONLY)
    for item in items:
        if item.get_closest_marker("interpreted_core") is not None:
            item.add_marker(skip)
