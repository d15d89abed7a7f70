"""[daemon] keys bounding pre-authentication state (half-open limits, fragment budgets)."""

from __future__ import annotations

import pytest

from pyipsec.config.loader import ConfigError, load_config_text
from pyipsec.config.model import DaemonConfig


def test_defaults() -> None:
    d = DaemonConfig()
    assert (d.half_open_limit, d.cookie_threshold_ip, d.block_threshold) == (5000, 3, 5)
    assert (d.max_fragment_bytes_unauthenticated, d.max_fragment_bytes) == (10_000, 65_536)
    assert d.half_open_memory == 64 << 20


def test_keys_are_read() -> None:
    cfg = load_config_text(
        """
[daemon]
half_open_limit = 100
cookie_threshold_ip = 0
block_threshold = 7
max_fragment_bytes_unauthenticated = "8k"
max_fragment_bytes = 131072
half_open_memory = "16M"
"""
    )
    assert (cfg.half_open_limit, cfg.cookie_threshold_ip, cfg.block_threshold) == (100, 0, 7)
    assert cfg.max_fragment_bytes_unauthenticated == 8192
    assert cfg.max_fragment_bytes == 131072
    assert cfg.half_open_memory == 16 << 20
    assert load_config_text("[daemon]\nhalf_open_memory = 0\n").half_open_memory == 0


@pytest.mark.parametrize(
    ("line", "where"),
    [
        ("half_open_limit = -1", "half_open_limit"),
        ("block_threshold = 'many'", "block_threshold"),
        ("max_fragment_bytes_unauthenticated = 100", "max_fragment_bytes_unauthenticated"),
        ("max_fragment_bytes = '1G'", "max_fragment_bytes"),
        ("half_open_memory = '64k'", "half_open_memory"),
        ("half_open_memory = -5", "half_open_memory"),
    ],
)
def test_bad_values_are_located(line: str, where: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config_text(f"[daemon]\n{line}\n")
    assert where in str(exc.value)
