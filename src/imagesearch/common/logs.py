"""Service logs: one JSON object per line (LOG_FORMAT=json, the default) or plain text.

Every line written while a span is current carries its `trace_id` and `span_id`, in the hex form
Jaeger shows, so a log line of request work leads to its trace. Log shippers (Fluent Bit, Vector,
Promtail) parse the JSON as it is; `LOG_FORMAT=text` is for people reading a terminal.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

LOG_FORMATS = ("json", "text")
# The attributes every LogRecord has: anything else on a record came from `extra=` and is kept.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class TraceContextFilter(logging.Filter):
    """Puts the current span's ids on the record (empty outside a span)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        else:
            record.trace_id = record.span_id = ""
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", "")
        if trace_id:
            line["trace_id"] = trace_id
            line["span_id"] = getattr(record, "span_id", "")
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in ("trace_id", "span_id") and not key.startswith("_"):
                line[key] = value if isinstance(value, str | int | float | bool) or value is None else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        trace_id = getattr(record, "trace_id", "")
        return f"{text} [trace_id={trace_id} span_id={getattr(record, 'span_id', '')}]" if trace_id else text


def configure_logging(service: str, level: str, log_format: str = "json") -> None:
    """The root logger of a service process: to stderr, at `level`, in `log_format`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter(service) if log_format == "json" else _TextFormatter())
    root = logging.getLogger()
    for previous in list(root.handlers):
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
