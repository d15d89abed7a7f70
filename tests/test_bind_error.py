"""A listening socket that cannot be bound names the address, the port and the
configuration keys they come from (``daemon.listen``, ``daemon.ike_port`` /
``daemon.natt_port``)."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pyipsec.daemon.sockets import BindError, UdpSocket

ABSENT = "192.0.2.123"  # TEST-NET-1: not configured on any test host
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def absent_address() -> str:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((ABSENT, 0))
    except OSError:
        return ABSENT
    finally:
        probe.close()
    pytest.skip(f"{ABSENT} is configured on this host")


@pytest.mark.parametrize(("natt", "key"), [(False, "daemon.ike_port"), (True, "daemon.natt_port")])
def test_bind_error_names_address_port_and_keys(absent_address: str, natt: bool, key: str) -> None:
    with pytest.raises(BindError) as ei:
        UdpSocket(absent_address, 50500, natt=natt)
    err = ei.value
    assert isinstance(err, OSError) and err.errno == errno.EADDRNOTAVAIL
    assert (err.addr, err.port, err.port_key) == (absent_address, 50500, key)
    text = str(err)
    assert text.startswith(f"cannot listen on {absent_address}:50500 ")
    assert f"daemon.listen = '{absent_address}'" in text and f"{key} = 50500" in text
    assert "not configured on this host" in text  # the hint for EADDRNOTAVAIL
    assert "[Errno" not in text


def test_bind_error_for_a_port_in_use() -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # no SO_REUSEADDR
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    try:
        with pytest.raises(BindError) as ei:
            UdpSocket("127.0.0.1", port, natt=False)
    finally:
        holder.close()
    assert ei.value.errno == errno.EADDRINUSE
    assert f"cannot listen on 127.0.0.1:{port} " in str(ei.value)
    assert "another process" in str(ei.value)


def test_bind_error_for_ipv6_brackets_the_address() -> None:
    err = BindError("2001:db8::7", 500, natt=False, cause=OSError(errno.EADDRNOTAVAIL, "x"))
    assert str(err).startswith("cannot listen on [2001:db8::7]:500 (daemon.listen = ")


def test_pyipsec_daemon_reports_the_setting(absent_address: str, tmp_path: Path) -> None:
    conf = tmp_path / "d.toml"
    conf.write_text(
        f'[daemon]\nlisten = ["{absent_address}"]\nike_port = 50500\nnatt_port = 54500\n'
        f'control_socket = "{tmp_path / "c.sock"}"\n'
    )
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.run(
        [sys.executable, "-m", "pyipsec", "daemon", "--config", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 1
    assert (
        f"pyipsec daemon: cannot listen on {absent_address}:50500 "
        f"(daemon.listen = '{absent_address}', daemon.ike_port = 50500): "
    ) in proc.stderr
