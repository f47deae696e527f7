"""Our own log lines written straight to the service's handler are the lines ``logging``
would have written, and go through ``logging`` whenever anything else listens."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator

import pytest

from paytabs_guard.observability import configure_logging, get_logger

SECRET = "s3cr3t-server-key-value"
VISA = "4111111111111111"


@pytest.fixture
def service_logging() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    """Logging configured as the service configures it, into a string."""
    root = logging.getLogger()
    kept_level = root.level
    stream = io.StringIO()
    handler = configure_logging("info", stream=stream, secrets=[SECRET])
    try:
        yield stream, handler
    finally:
        root.removeHandler(handler)
        root.setLevel(kept_level)


@contextlib.contextmanager
def alone(handler: logging.Handler) -> Iterator[None]:
    """The root logger as the service leaves it: our handler and nothing else. pytest adds
    its capture handlers around the test's body, so they are set aside inside it."""
    root = logging.getLogger()
    kept = list(root.handlers)
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = kept


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    for line in lines:
        line.pop("time")
    return lines


class _Counting(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_line_written_directly_is_the_line_logging_writes(
    service_logging: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, handler = service_logging
    log = get_logger("paytabs_guard.tests.direct")
    listener = _Counting()

    def write() -> None:
        log.info("webhook", tran_ref="TST2633824054353", note=f"card {VISA}", key=SECRET)
        try:
            raise ValueError(f"no good: {SECRET}")
        except ValueError:
            log.exception("it failed", payment_id="p-1")

    made = logging.getLogRecordFactory()
    records: list[str] = []

    def counting(*args: object, **kwargs: object) -> logging.LogRecord:
        record = made(*args, **kwargs)
        records.append(record.name)
        return record

    logging.setLogRecordFactory(counting)
    try:
        with alone(handler):
            write()  # alone: written directly, no LogRecord made
            direct = stream.getvalue()
            assert records == []
            logging.getLogger().addHandler(listener)
            write()  # someone else listens: through logging
    finally:
        logging.setLogRecordFactory(made)

    assert len(listener.records) == 2  # the second pass went through logging
    first, second = _lines(stream)[:2], _lines(stream)[2:]
    assert first == second
    assert first[0]["tran_ref"] == "TST2633824054353"
    assert first[0]["note"] == "card [card redacted]"
    assert first[1]["level"] == "error"
    assert "ValueError" in str(first[1]["exception"])
    assert SECRET not in stream.getvalue()
    assert VISA not in stream.getvalue()
    assert direct.count("\n") == 2  # one line each, nothing written twice


@pytest.mark.parametrize("where", ["root handler", "logger handler", "filter", "propagate"])
def test_anything_else_listening_gets_the_line_through_logging(
    service_logging: tuple[io.StringIO, logging.Handler], where: str
) -> None:
    stream, handler = service_logging
    name = "paytabs_guard.tests.listened"
    named = logging.getLogger(name)
    listener = _Counting()
    refused: list[str] = []

    def refuse(record: logging.LogRecord) -> bool:
        refused.append(record.name)
        return False

    try:
        with alone(handler):
            if where == "root handler":
                logging.getLogger().addHandler(listener)
            elif where == "logger handler":
                named.addHandler(listener)
            elif where == "filter":
                named.addFilter(refuse)
            else:
                named.propagate = False
                named.addHandler(listener)
            get_logger(name).info("hello", n=1)
    finally:
        named.removeHandler(listener)
        named.removeFilter(refuse)
        named.propagate = True

    if where == "filter":
        assert refused == [name]
        assert stream.getvalue() == ""  # the filter's word holds, as in logging
    elif where == "propagate":
        assert len(listener.records) == 1
        assert stream.getvalue() == ""  # the root's handler never sees it, as in logging
    else:
        assert len(listener.records) == 1
        assert [line["event"] for line in _lines(stream)] == ["hello"]


def test_the_handlers_level_and_its_removal_are_honoured(
    service_logging: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, handler = service_logging
    log = get_logger("paytabs_guard.tests.levels")
    with alone(handler):
        handler.setLevel(logging.WARNING)
        log.info("quiet")
        log.warning("loud")
        handler.setLevel(logging.NOTSET)
        logging.getLogger().removeHandler(handler)
        log.warning("after removal")
    assert [line["event"] for line in _lines(stream)] == ["loud"]


def test_the_fields_a_logging_call_passes_in_extra_are_on_its_line_redacted(
    service_logging: tuple[io.StringIO, logging.Handler],
) -> None:
    # The service layer logs through the standard library with extra={...}; the JSON line
    # kept only the message, so "reconcile: settling a payment failed" (which the docs and the
    # alert say names the payment) never said which one, in serve or anywhere else.
    stream, handler = service_logging
    log = logging.getLogger("paytabs_guard.service.reconciliation")
    with alone(handler):
        try:
            raise RuntimeError("a row it cannot read")
        except RuntimeError:
            log.exception("reconcile: settling a payment failed", extra={"payment_id": "pay_1"})
        log.info("reconcile: PayTabs could not be asked", extra={"reason": f"{SECRET} {VISA}"})
        logging.getLogger("uvicorn.error").warning("Started", extra={"color_message": "\x1b[1m"})
    failed, unasked, uvicorn = _lines(stream)
    assert failed["payment_id"] == "pay_1"
    assert "a row it cannot read" in str(failed["exception"])
    assert SECRET not in str(unasked["reason"])
    assert VISA not in str(unasked["reason"])
    assert "color_message" not in uvicorn
