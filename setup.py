"""Optional compilation of the protocol core with mypyc (``PYIPSEC_MYPYC=1``).

``pip install .`` builds pure Python.  With ``PYIPSEC_MYPYC=1`` in the environment the
modules in ``COMPILED`` are compiled to C extensions by mypyc (the code is mypy --strict
already) and installed next to their sources; everything else stays interpreted.  It
needs a C compiler and Python's headers (Debian: ``gcc python3-dev``).  ``pip install -e``
with it compiles in place (``scripts/compile-core`` does that for a checkout).  All
metadata is in ``pyproject.toml``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup

sys.path.insert(0, "src/pyipsec")  # build_info alone (standard library only), not pyipsec
from build_info import COMPILED_PACKAGES


def _core_sources() -> list[str]:
    src = Path("src/pyipsec")
    return sorted(str(p) for d in COMPILED_PACKAGES for p in (src / d).rglob("*.py"))


#: mypyc before this leaked a reference in every ``bytes + bytes`` (the left operand)
MYPYC_MINIMUM = (2, 4)

if os.environ.get("PYIPSEC_MYPYC", "") == "1":
    import mypy.version
    from mypyc.build import mypycify

    found = tuple(int(x) for x in mypy.version.__version__.split("+")[0].split(".")[:2])
    if found < MYPYC_MINIMUM:
        raise SystemExit(
            f"PYIPSEC_MYPYC=1 needs mypy >= {'.'.join(map(str, MYPYC_MINIMUM))} "
            f"(found {mypy.version.__version__}: its mypyc leaks memory in this code)"
        )

    setup(ext_modules=mypycify(["--config-file", "pyproject.toml", *_core_sources()]))
else:
    setup()
