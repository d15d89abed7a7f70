"""How this installation's protocol core runs: compiled by mypyc or interpreted.

``PYIPSEC_MYPYC=1 pip install .`` (see ``setup.py``) compiles the IKEv2 core and its
crypto to C extensions, which Python imports in preference to the ``.py`` files next to
them.  An extension older than its source is *stale*: the edited source would be
ignored, so importing pyipsec from a checkout warns about it (``scripts/compile-core`` rebuilds,
``scripts/compile-core --clean`` goes back to interpreted).
"""

from __future__ import annotations

import importlib.machinery
import warnings
from pathlib import Path

#: the packages ``setup.py`` compiles: what a responder handshake runs through (issue
#: #13), the IKEv2 core and its crypto
COMPILED_PACKAGES = ("ikev2", "crypto")
_PACKAGE = Path(__file__).resolve().parent


def _extensions() -> list[tuple[Path, Path]]:
    """(extension, its source) for every compiled module of the core."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return [
        (ext, ext.with_name(ext.name[: -len(suffix)] + ".py"))
        for package in COMPILED_PACKAGES
        for ext in (_PACKAGE / package).rglob("*")
        for suffix in suffixes
        if ext.name.endswith(suffix)
    ]


def core_compiled() -> bool:
    """The IKEv2 core is imported from mypyc-compiled extensions."""
    spec = importlib.machinery.PathFinder.find_spec("manager", [str(_PACKAGE / "ikev2")])
    return spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)


def core_description() -> str:
    return "compiled by mypyc" if core_compiled() else "interpreted"


def _in_checkout() -> bool:
    """Imported from a source checkout (``src/pyipsec`` next to ``pyproject.toml``), where
    sources get edited; an installation's file times are those of its archive."""
    return (_PACKAGE.parent.parent / "pyproject.toml").exists()


def stale_extensions() -> list[str]:
    """Compiled modules of a checkout whose source changed after they were compiled."""
    if not _in_checkout():
        return []
    stale = []
    for ext, source in _extensions():
        if source.exists() and source.stat().st_mtime > ext.stat().st_mtime:
            stale.append(str(source.relative_to(_PACKAGE.parent)))
    return sorted(stale)


def warn_if_stale() -> None:
    stale = stale_extensions()
    if stale:
        warnings.warn(
            f"the compiled core is older than {len(stale)} of its sources ({stale[0]}, ...): "
            "those edits are ignored; run scripts/compile-core again, or "
            "scripts/compile-core --clean",
            RuntimeWarning,
            stacklevel=2,
        )
