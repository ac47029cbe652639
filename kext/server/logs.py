"""kext's log lines (`logging.format`, `logging.level`): text for a terminal, or one JSON
object per line for a log pipeline. Records may carry structured fields
(`extra={"fields": {...}}`, as the request log line does); text renders them as key="value"
pairs after the message (as klog does), JSON as keys of the object.

Levels: DEBUG has one line per request (kube-apiserver logs those at -v=3); INFO has what
an operator follows (start-up, shutdown, watch caches primed, a request that failed with a
5xx or took longer than a second); WARNING and ERROR what needs a look."""

from __future__ import annotations

import datetime
import logging
import sys
from typing import Any

import orjson

from kext.config import LoggingConfig

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """`2024-05-01 10:00:00,123 INFO kext: message key="value" n=1`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if not fields:
            return line
        pairs = " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        head, newline, rest = line.partition("\n")  # a traceback stays below the fields
        return f"{head} {pairs}{newline}{rest}"


def _text_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(str(value)).decode()


class JSONFormatter(logging.Formatter):
    """`{"ts":"2024-05-01T10:00:00.123Z","level":"info","logger":"kext","msg":"...",...}`."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        out: dict[str, Any] = {
            "ts": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update({k: v for k, v in fields.items() if k not in out})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(config: LoggingConfig) -> None:
    """Send every log record at config.level or above to standard error, formatted as
    config.format says (replacing whatever was configured before)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if config.format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, config.level.upper()))
