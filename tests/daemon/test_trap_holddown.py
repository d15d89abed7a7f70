"""``start_action = trap``: a failed trap-started setup does not re-initiate per packet.

Found against strongSwan with a wrong PSK: every ping (5/s) started a full IKE_SA_INIT +
IKE_AUTH, because IkeSaFailed/ChildSaFailed cleared the trap's hold-down.  The failure now
restarts the hold-down (``TRAP_RETRY``) instead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pyipsec.config.loader import load_config_text
from pyipsec.daemon import runtime
from pyipsec.daemon.runtime import Daemon, TrapPolicy
from pyipsec.ikev2 import events as ev

from .fakes import FakeManager

CONF = """
[daemon]
listen = ["127.0.0.1"]
ike_port = 0
natt_port = 0
control_socket = "{sock}"
[connections.c]
remote_addrs = ["192.0.2.2"]
[connections.c.children.net]
local_ts = ["203.0.113.0/26"]
remote_ts = ["203.0.113.64/26"]
start_action = "trap"
[secrets.s]
secret = "x"
"""


def test_failed_trap_setup_holds_the_trap_down(tmp_path: Path, monkeypatch: Any) -> None:
    cfg = load_config_text(CONF.format(sock=tmp_path / "c.sock"))
    mgr = FakeManager()
    flow = SimpleNamespace(src_addr="203.0.113.1", dst_addr="203.0.113.65")
    trap = TrapPolicy("c", "net")

    async def go() -> None:
        d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)
        await d.start()
        clock = [d.now()]
        monkeypatch.setattr(d, "now", lambda: clock[0])
        try:
            d.dp.trap(trap, flow)  # type: ignore[arg-type]
            assert mgr.initiated == [("c", "net")]
            for failure in (ev.IkeSaFailed(1, "c", "AUTHENTICATION_FAILED"),
                            ev.ChildSaFailed(2, "c", "net", "TS_UNACCEPTABLE")):
                clock[0] += runtime.TRAP_RETRY + 1  # the previous hold-down is over
                d.dp.trap(trap, flow)  # type: ignore[arg-type]
                n = len(mgr.initiated)
                clock[0] += 0.5
                mgr.events = [failure]
                d.pump()
                for _ in range(5):  # the next packets right after the failure
                    clock[0] += 0.2
                    d.dp.trap(trap, flow)  # type: ignore[arg-type]
                assert len(mgr.initiated) == n, failure
                clock[0] += runtime.TRAP_RETRY
                d.dp.trap(trap, flow)  # type: ignore[arg-type]
                assert len(mgr.initiated) == n + 1, failure
        finally:
            await d.close()

    asyncio.run(go())
