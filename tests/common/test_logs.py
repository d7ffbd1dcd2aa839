"""Service logs: JSON lines that lead to the trace of the request they were written for."""

from __future__ import annotations

import io
import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common.logs import JsonFormatter, TraceContextFilter, _TextFormatter


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.logs.{id(out)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, out


def test_a_line_written_inside_a_span_carries_its_trace_and_span_ids() -> None:
    logger, out = _logger(JsonFormatter("gateway"))
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("Search") as span:
        logger.warning("cache down for %.1f s", 2.0, extra={"catalog": "shoes"})
        context = span.get_span_context()
    line = json.loads(out.getvalue())
    assert line["trace_id"] == format(context.trace_id, "032x")  # as Jaeger shows it
    assert line["span_id"] == format(context.span_id, "016x")
    assert line["message"] == "cache down for 2.0 s"
    assert (line["level"], line["service"], line["catalog"]) == ("WARNING", "gateway", "shoes")
    assert line["time"].endswith("+00:00")


def test_a_line_outside_any_span_has_no_trace_ids_and_exceptions_stay_on_one_line() -> None:
    logger, out = _logger(JsonFormatter("embedder"))
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("decode failed")
    text = out.getvalue()
    assert text.count("\n") == 1  # one object per line, traceback included
    line = json.loads(text)
    assert "trace_id" not in line and "ValueError: boom" in line["exception"]


def test_text_lines_name_the_trace_too() -> None:
    logger, out = _logger(_TextFormatter())
    with TracerProvider().get_tracer("test").start_as_current_span("Embed") as span:
        logger.info("embedded")
    assert f"trace_id={format(span.get_span_context().trace_id, '032x')}" in out.getvalue()
