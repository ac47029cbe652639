"""kext's log lines as an operator reads them: text with key="value" fields, or one JSON
object per line; the configured level decides what is shown."""

from __future__ import annotations

import io
import json
import logging

import pytest

from kext.config import LoggingConfig
from kext.server.logs import JSONFormatter, TextFormatter, configure_logging


def record(level: int = logging.INFO, **fields: object) -> logging.LogRecord:
    rec = logging.LogRecord("kext.httplog", level, __file__, 1, "HTTP", None, None)
    if fields:
        rec.fields = fields
    return rec


FIELDS = {"verb": "GET", "URI": "/apis/g/v1/w", "user": "alice", "resp": 200,
          "latency": "1.5ms", "userAgent": "kubectl/v1.30 (linux)"}


def test_text_lines_carry_their_fields_quoted() -> None:
    line = TextFormatter().format(record(**FIELDS))
    assert line.endswith(' INFO kext.httplog: HTTP verb="GET" URI="/apis/g/v1/w" user="alice" '
                         'resp=200 latency="1.5ms" userAgent="kubectl/v1.30 (linux)"')
    assert TextFormatter().format(record()).endswith("INFO kext.httplog: HTTP")


def test_json_lines_are_one_object_each() -> None:
    out = json.loads(JSONFormatter().format(record(logging.WARNING, **FIELDS)))
    assert out["level"] == "warning" and out["logger"] == "kext.httplog"
    assert out["msg"] == "HTTP" and out["resp"] == 200 and out["user"] == "alice"
    assert out["ts"].endswith("Z") and "T" in out["ts"]
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("kext", logging.ERROR, __file__, 1, "failed", None,
                                   __import__("sys").exc_info())
    line = JSONFormatter().format(failed)
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["error"]


@pytest.mark.parametrize(("fmt", "level"), [("text", "info"), ("json", "debug")])
def test_configure_logging_sets_format_and_level(fmt: str, level: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(LoggingConfig(format=fmt, level=level))
        logging.getLogger("kext.httplog").debug("HTTP", extra={"fields": {"resp": 200}})
        logging.getLogger("kext").info("started")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = stream.getvalue().splitlines()
    if fmt == "json":
        assert [json.loads(x)["msg"] for x in lines] == ["HTTP", "started"]
    else:
        assert len(lines) == 1 and lines[0].endswith("INFO kext: started")
