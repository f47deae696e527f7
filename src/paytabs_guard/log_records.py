"""Records that come through the standard library's ``logging`` (uvicorn's, the service
layer's, other libraries'), as the service's JSON handler (observability.py) takes them."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from structlog.typing import EventDict, WrappedLogger

#: Every attribute a plain ``LogRecord`` has; the others came in ``extra={...}``.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    # uvicorn's copy of its message with terminal colour codes: the message is already there
    "color_message",
}


def record_extras(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """The fields a ``logging`` call passed in ``extra`` (the service layer's ``payment_id``,
    ``reason``), on the JSON line: the formatter kept only the message, so "reconcile: settling
    a payment failed" never said which payment. The redactor runs after this, on them too."""
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in event_dict:
                event_dict[key] = value
    return event_dict


class ShutdownCancel(logging.Filter):
    """uvicorn logs every request its shutdown cancels past the grace period as "Exception in
    ASGI application" with a 40-frame traceback of the CancelledError. That is a restart doing
    what it should (the request got its 503 ``interrupted``, on its access line, and uvicorn's
    "Cancel N running task(s)" says why): one warning line without the traceback instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, asyncio.CancelledError):
            record.msg, record.args, record.exc_info = _CUT_BY_SHUTDOWN, (), None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_CUT_BY_SHUTDOWN: Final = "request cancelled: it outlived the shutdown's grace period"
