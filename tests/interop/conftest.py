"""pytest fixtures for the interop suite (namespaces, strongSwan, pyipsec daemons).

Tests that need the testbed request ``nat_topology``/``nonat_topology`` (module-scoped:
one topology per test module, torn down in a finalizer), ``charon_factory`` and
``pyipsec_factory`` (function-scoped: every charon/daemon a test starts is stopped by PID
and its state directory removed when the test ends, pass or fail).  Everything skips with
a reason when not running as root, when namespaces cannot be created or when strongSwan
is missing.  Besides the finalizers, each helper module registers an ``atexit`` clean-up.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from . import strongswan, topology
from .pyipsec_daemon import PyipsecDaemon
from .strongswan import Charon
from .topology import Topology


@functools.cache
def _testbed_missing() -> str | None:
    return topology.missing_requirements() or strongswan.missing_requirements()


@pytest.fixture(scope="session")
def testbed() -> None:
    """Skip unless namespaces and strongSwan are usable here."""
    reason = _testbed_missing()
    if reason:
        pytest.skip(reason)


def _topology(mode: str, **kwargs: Any) -> Iterator[Topology]:
    reason = _testbed_missing()
    if reason:
        pytest.skip(reason)
    topo = Topology(mode=mode, **kwargs)
    try:
        topo.up()
        yield topo
    finally:
        topo.down()


@pytest.fixture(scope="module")
def nat_topology() -> Iterator[Topology]:
    """left behind a masquerading NAT router, right on the "internet" (module-scoped)."""
    yield from _topology("nat")


@pytest.fixture(scope="module")
def nonat_topology() -> Iterator[Topology]:
    """The same three namespaces, routed without NAT (module-scoped)."""
    yield from _topology("nonat")


@pytest.fixture(scope="module")
def nat2_topology() -> Iterator[Topology]:
    """Like ``nat_topology`` plus ``left2``, a second LAN host behind the same NAT."""
    yield from _topology("nat", extra_left_host=True)


@pytest.fixture
def charon_factory() -> Iterator[Callable[..., Charon]]:
    """``charon_factory(netns, swanctl_text, **Charon kwargs)`` -> a started charon."""
    started: list[Charon] = []

    def make(netns: str, swanctl_text: str, **kwargs: Any) -> Charon:
        charon = Charon(netns, **kwargs)
        started.append(charon)
        return charon.start(swanctl_text)

    yield make
    for charon in reversed(started):
        charon.cleanup()


@pytest.fixture
def pyipsec_factory() -> Iterator[Callable[..., PyipsecDaemon]]:
    """``pyipsec_factory(netns, toml_text, state_dir=...)`` -> a started pyipsec daemon
    (stopped by PID when the test ends)."""
    started: list[PyipsecDaemon] = []

    def make(netns: str, toml_text: str, **kwargs: Any) -> PyipsecDaemon:
        daemon = PyipsecDaemon(netns, toml_text, **kwargs)
        started.append(daemon)
        return daemon.start()

    yield make
    for daemon in reversed(started):
        daemon.cleanup()


@pytest.fixture(autouse=True)
def _clear_impairments(request: pytest.FixtureRequest) -> Iterator[None]:
    """Module-scoped topologies are shared: no impairment leaks into the next test."""
    yield
    for name in ("nat_topology", "nonat_topology", "nat2_topology"):
        if name in request.fixturenames:
            topo: Topology = request.getfixturevalue(name)
            if topo.is_up:
                topo.clear_impairments()
