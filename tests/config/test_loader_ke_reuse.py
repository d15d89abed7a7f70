"""[daemon] ke_reuse_seconds / ke_reuse_count (RFC 7296 §2.12): off by default, bounded."""

from __future__ import annotations

import pytest

from pyipsec.config.loader import ConfigError, load_config_text
from pyipsec.config.model import DaemonConfig


def test_off_by_default() -> None:
    d = DaemonConfig()
    assert (d.ke_reuse_seconds, d.ke_reuse_count) == (0.0, 128)
    cfg = load_config_text("[daemon]\n")
    assert cfg.ke_reuse_seconds == 0.0


def test_keys_are_read() -> None:
    cfg = load_config_text('[daemon]\nke_reuse_seconds = "10s"\nke_reuse_count = 500\n')
    assert (cfg.ke_reuse_seconds, cfg.ke_reuse_count) == (10.0, 500)


@pytest.mark.parametrize(
    ("line", "where"),
    [
        ("ke_reuse_seconds = -1", "ke_reuse_seconds"),
        ("ke_reuse_seconds = '2h'", "ke_reuse_seconds"),
        ("ke_reuse_count = 0", "ke_reuse_count"),
        ("ke_reuse_count = 'lots'", "ke_reuse_count"),
    ],
)
def test_bad_values_are_located(line: str, where: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config_text(f"[daemon]\n{line}\n")
    assert where in str(exc.value)
