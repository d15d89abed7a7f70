"""``[daemon.log] format = "json"``: one JSON object per line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from pyipsec.config.loader import ConfigError, load_config_text
from pyipsec.daemon.logsetup import JsonFormatter, setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    root = logging.getLogger("pyipsec")
    for h in list(root.handlers):
        if getattr(h, "_pyipsec", False):
            root.removeHandler(h)
    root.propagate = True
    root.setLevel(logging.NOTSET)
    for sub in ("ike", "child", "esp", "net", "cfg"):
        logging.getLogger(f"pyipsec.{sub}").setLevel(logging.NOTSET)


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_lines(restore_logging: None) -> None:
    buf = io.StringIO()
    setup_logging({"default": "debug"}, stream=buf, fmt="json")
    logging.getLogger("pyipsec.ike").info('IKE SA 7 (gcm): established, "quoted"\nnext')
    logging.getLogger("pyipsec.ike").warning("IKE SA home #12 failed: %s", "timeout")
    logging.getLogger("pyipsec.child").debug("plain %d", 3)
    logging.getLogger("pyipsec.net").info("with extra", extra={"conn": "x", "ike_sa": 5})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("pyipsec.cfg").exception("failed")
    out = lines(buf)
    assert len(out) == 5  # one line each, even with a newline in the message
    a, b, c, d, e = out
    assert a["level"] == "info" and a["subsystem"] == "ike"
    assert a["message"] == 'established, "quoted"\nnext'
    assert a["conn"] == "gcm" and a["ike_sa"] == 7
    assert str(a["time"]).endswith("Z") and "T" in str(a["time"])
    assert b["conn"] == "home" and b["ike_sa"] == 12 and b["message"].startswith("IKE SA home")  # type: ignore[union-attr]
    assert c == {"time": c["time"], "level": "debug", "subsystem": "child", "message": "plain 3"}
    assert d["conn"] == "x" and d["ike_sa"] == 5
    assert e["level"] == "error" and "RuntimeError: boom" in str(e["exception"])


def test_formatter_time_is_utc() -> None:
    r = logging.LogRecord("pyipsec.esp", logging.INFO, __file__, 1, "m", None, None)
    r.created = 0.5
    assert json.loads(JsonFormatter().format(r))["time"] == "1970-01-01T00:00:00.500Z"


def test_text_stays_the_default(restore_logging: None) -> None:
    buf = io.StringIO()
    setup_logging({}, stream=buf)
    logging.getLogger("pyipsec.ike").info("hello")
    assert "[pyipsec.ike] hello" in buf.getvalue()
    with pytest.raises(ValueError):
        setup_logging({}, stream=buf, fmt="xml")


def test_config_log_format() -> None:
    assert load_config_text("").log_format == "text"
    cfg = load_config_text('[daemon.log]\nformat = "JSON"\nike = "debug"\n')
    assert cfg.log_format == "json" and cfg.log_levels == {"ike": "debug"}
    with pytest.raises(ConfigError) as ei:
        load_config_text('[daemon.log]\nformat = "xml"\n')
    assert [str(e) for e in ei.value.errors] == [
        "daemon.log.format: invalid log format 'xml' (hint: one of text, json)"
    ]
    with pytest.raises(ConfigError) as ei:
        load_config_text("[daemon.log]\nformat = 1\n")
    assert str(ei.value.errors[0]).startswith("daemon.log.format: expected a string")
    with pytest.raises(ConfigError) as ei:
        load_config_text('[daemon.log]\nfromat = "json"\n')
    assert "did you mean 'format'" in str(ei.value.errors[0])
