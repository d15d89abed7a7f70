"""The build backend: setuptools, plus mypy as a build requirement when the protocol core
is to be compiled (``PYIPSEC_MYPYC=1``, see ``setup.py``).

A PEP 517 in-tree backend (``backend-path``): the build requirements of a pure-Python
build stay setuptools alone.
"""

from __future__ import annotations

import os

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the PEP 517/660 hooks, unchanged)

#: the mypy that compiles the core (mypyc is part of it); the range of the test extra
MYPYC_REQUIREMENT = "mypy>=2.4,<3"


def _compiled() -> bool:
    return os.environ.get("PYIPSEC_MYPYC", "") == "1"


def get_requires_for_build_wheel(
    config_settings: dict[str, str | list[str] | None] | None = None,
) -> list[str]:
    if _compiled():  # setuptools' hook would run setup.py, which imports mypyc
        return ["wheel", MYPYC_REQUIREMENT]
    return _setuptools.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(
    config_settings: dict[str, str | list[str] | None] | None = None,
) -> list[str]:
    if _compiled():
        return ["wheel", MYPYC_REQUIREMENT]
    return _setuptools.get_requires_for_build_editable(config_settings)
