"""Structured JSON logs that never carry secrets, signatures, tokens or card data.

Our own loggers (:func:`get_logger`) are structlog loggers on top of the standard library, so
uvicorn's, SQLAlchemy's and the relay's stdlib records pass through the same formatter: one JSON
object per line, with the request id of the request being served (bound in a contextvar by the
request middleware) on every line.

Redaction runs in the formatter, on every record, ours or foreign, as a backstop to what the
call sites already leave out:

1. values under sensitive keys (``signature``, ``authorization``, ``*token*``, ``*secret*``,
   ``api_key``, ``card_number``, ``cvv``, ``body``, contact details…) become ``"[redacted]"``;
2. in every string (messages and exception text included) configured secrets (server key,
   API keys, webhook secrets) are replaced, as are 64-hex-digit runs (HMAC-SHA256 signatures),
   Standard Webhooks signature tokens, bearer tokens and Luhn-valid 13-19 digit card numbers
   (in any script's digits, with any one separator between digits: :func:`card_numbers`, the
   rule the API also refuses card numbers in stored text by).

One exception to the card rule: the value of a transaction-reference field (``tran_ref``,
``previous_tran_ref``, ``gateway_ref``…) that is exactly a letter prefix glued to digits
(PayTabs' ``TST2633824054353``) is a PayTabs reference, and about one in ten of them passes the
Luhn check by chance; hiding those would leave operators unable to match a log line to a
transaction. A card number is never written that way, and the exception holds only for the
whole value of such a field: the same digits anywhere else (a message, a reason, any other
field), or with spaces or anything else in the value, are still redacted. So does our own id
under ``payment_id``, ``card_id`` or ``saved_card_id`` (one in a thousand holds a Luhn run).

Non-ASCII and control characters are escaped by the JSON renderer (``ensure_ascii``), so an
Arabic name, a ``\\u0000`` or a right-to-left override in a payload cannot forge a log line.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator, MutableMapping
from typing import IO, Any, Final

import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars, merge_contextvars
from structlog.stdlib import BoundLogger, ProcessorFormatter
from structlog.typing import EventDict, Processor, WrappedLogger

from paytabs_guard.card_networks import could_be_issued
from paytabs_guard.log_records import ShutdownCancel, record_extras

REDACTED: Final = "[redacted]"
CARD_REDACTED: Final = "[card redacted]"

_SENSITIVE_EXACT: Final = frozenset(
    {
        "authorization",
        "signature",
        "token",
        "body",
        "raw_body",
        "payload",
        "password",
        "cvv",
        "cvc",
        "pan",
        "card_number",
        "cookie",
        "set_cookie",
        "email",
        "customer_email",
        "phone",
    }
)
_SENSITIVE_PARTS: Final = ("secret", "password", "token", "signature", "api_key", "server_key")

_HEX_DIGEST: Final = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64}(?![0-9A-Fa-f])")
_STANDARD_SIGNATURE: Final = re.compile(r"\bv1a?,[A-Za-z0-9+/=]{16,}")
_BEARER: Final = re.compile(r"(?i)\bbearer\s+[^\s\"',;]+")
_WHSEC: Final = re.compile(r"\bwhsec_[A-Za-z0-9+/=]+")
# What may sit between two digits of a card number: one character of any kind a writer (or
# someone getting past the check) puts between groups. "4111.1111.1111.1111", NBSP or
# zero-width spaces between the groups all read as a card number to a person; only spaces and
# hyphens were taken, so those were stored and logged. ``\s`` is every Unicode space; the
# ranges are the format characters (Unicode's Cf: soft hyphen, zero-width and direction
# marks, BOM...), listed because ``re`` has no category classes (a test holds the list to
# ``unicodedata``).
_SEPARATOR: Final = (
    "\\s\\-./_\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f"
)
# A run of at least 13 digits, in any script (``\d`` is every Unicode decimal digit: full-width
# and Arabic-Indic digits are card digits too), one separator allowed between two of them;
# _card_numbers_in decides whether a card number is in it.
_CARD_CANDIDATE: Final = re.compile(rf"(?<!\d)\d(?:[{_SEPARATOR}]?\d){{12,}}(?!\d)")
_GROUP_SEPARATOR: Final = re.compile(f"[{_SEPARATOR}]")
# What any of the five patterns above needs at the least, so that most strings in a line (the
# event, a route, a method, an id), which hold none of it, skip the five substitutions. Each
# check is looser than its pattern, so nothing that one of them would replace gets by. Four
# checks, not one alternation: each then runs on the regex engine's or str's fast path, and
# together they cost a third of the single search (3 us instead of 8 on a callback's line).
# The digit check: a digit and 12 more digits or separators, of ASCII when the text is ASCII
# (nearly every string: the narrow class, ASCII's spaces spelled out rather than \s, keeps the
# search as fast as before). Written as the card pattern's own start, (separator? digit) x 12,
# the search took three times as long.
_DIGIT_RUN: Final = re.compile(r"[0-9][0-9\t-\r\x1c-\x1f \-./_]{12}")
_ANY_DIGIT_RUN: Final = re.compile(rf"\d[\d{_SEPARATOR}]{{12}}")
_HEX_RUN: Final = re.compile(r"[0-9A-Fa-f]{64}")


def _maybe_sensitive(text: str) -> bool:
    """Whether one of the five patterns could match in ``text``."""
    digits = _DIGIT_RUN if text.isascii() else _ANY_DIGIT_RUN
    return (
        digits.search(text) is not None
        or _HEX_RUN.search(text) is not None
        or "v1," in text
        or "v1a," in text
        or "whsec_" in text
        or "bearer" in text.lower()  # the pattern ignores case; lower() of ASCII is exact
    )


_MIN_SECRET_LENGTH: Final = 6  # shorter "secrets" would redact ordinary words and numbers
# A PayTabs transaction reference as a whole value: a few ASCII letters glued to digits.
_TRAN_REF_VALUE: Final = re.compile(r"[A-Za-z]{2,8}[0-9]{6,24}")
# Our ids as payment_steps.py makes them; one in a thousand holds a Luhn-valid digit run.
_OWN_ID_VALUE: Final = re.compile(r"(?:pay|card)_[0-9a-f]{24}")


def luhn_valid(digits: str) -> bool:
    """Whether ``digits`` passes the Luhn check (what every card number does); the digits
    may be of any script (``int`` reads each Unicode decimal digit)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_numbers_in(run: str) -> Iterator[str]:
    """The card numbers in a candidate run, as ASCII digits: the whole run, or, when it is
    written in groups, any span of whole groups of 13-19 digits passing the Luhn check.
    Checking only the whole run missed "order 12 4111 1111 1111 1111": 18 digits that fail the
    Luhn check, around 16 that pass it."""
    groups = _GROUP_SEPARATOR.split(run)
    for first in range(len(groups)):
        digits = ""
        for group in groups[first:]:
            digits += group
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_valid(digits):
                yield "".join(str(unicodedata.decimal(digit)) for digit in digits)


def _mask_card(match: re.Match[str]) -> str:
    """The run, or ``[card redacted]`` when a card number is in it."""
    for _ in _card_numbers_in(match.group()):
        return CARD_REDACTED
    return match.group()


def card_numbers(text: str) -> Iterator[str]:
    """The card numbers ``text`` holds (as ASCII digits) by the rule the redaction below hides
    them: 13-19 digits in any script, whole groups of them written with any one separator
    between digits (a space of any kind, ``-``, ``.``, ``/``, ``_``, a zero-width or other
    format character), passing the Luhn check, standing apart from letters. Digits glued to
    letters are left to the redaction alone: one in ten order references such as
    ``ORD1234567890123`` passes the Luhn check by chance."""
    if (_DIGIT_RUN if text.isascii() else _ANY_DIGIT_RUN).search(text) is None:
        return
    for match in _CARD_CANDIDATE.finditer(text):
        before = text[match.start() - 1 : match.start()]
        after = text[match.end() : match.end() + 1]
        if not (before.isalpha() or after.isalpha()):
            yield from _card_numbers_in(match.group())


def has_card_number(text: str) -> bool:
    """Whether ``text`` holds a card number (:func:`card_numbers`) that a card network could
    have issued (``card_networks``: its prefix and length). The API refuses such text in what
    it stores, shows or passes on (``field_rules.py``); the logs hide every Luhn-valid run."""
    return any(could_be_issued(number) for number in card_numbers(text))


def redact_card_numbers(text: str) -> str:
    """``text`` with each run holding a card number replaced as the log redaction does: for
    the client's own input that a response repeats (a field's name in a 422)."""
    return _CARD_CANDIDATE.sub(_mask_card, text)


@functools.lru_cache(maxsize=1024)  # keys are field names, a small set; never values
def _is_sensitive(key: str) -> bool:
    lowered = key.lower().replace("-", "_")
    return lowered in _SENSITIVE_EXACT or any(part in lowered for part in _SENSITIVE_PARTS)


@functools.lru_cache(maxsize=1024)  # keys are field names, a small set; never values
def _is_reference(key: str) -> bool:
    """A field that holds a PayTabs transaction reference: ``tran_ref``, ``tranRef``,
    ``previous_tran_ref``, ``parent_tran_ref``, ``gateway_ref``."""
    lowered = key.lower().replace("-", "").replace("_", "")
    return lowered.endswith("tranref") or lowered == "gatewayref"


@functools.lru_cache(maxsize=1024)  # keys are field names, a small set; never values
def _is_own_id(key: str) -> bool:
    """``payment_id``, ``card_id``, ``saved_card_id``: a field for one of our ids."""
    return key.lower().replace("-", "_").endswith(("payment_id", "card_id"))


def _keeps_digits(key: str, value: str) -> bool:
    """Whether ``value``, the whole value of field ``key``, is a reference or an id whose
    digits are no card number (the module docstring's exception)."""
    if _is_reference(key):
        return _TRAN_REF_VALUE.fullmatch(value) is not None
    return _is_own_id(key) and _OWN_ID_VALUE.fullmatch(value) is not None


class Redactor:
    """The redaction processor; ``secrets`` are literal values that must never be printed."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        kept = {s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted(kept, key=len, reverse=True)

    def scrub(self, text: str, *, cards: bool = True) -> str:
        """``text`` with every secret, signature, token and card number replaced; ``cards=False``
        only for a transaction reference's whole value (see the module docstring)."""
        if self._clean(text):
            return text
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = _HEX_DIGEST.sub(REDACTED, text)
        text = _STANDARD_SIGNATURE.sub(REDACTED, text)
        text = _WHSEC.sub(REDACTED, text)
        text = _BEARER.sub("Bearer " + REDACTED, text)
        return _CARD_CANDIDATE.sub(_mask_card, text) if cards else text

    def _field(self, key: str, value: object, depth: int) -> object:
        """A field's value: a transaction reference keeps its digits, the rest is scrubbed."""
        if _is_sensitive(key):
            return REDACTED
        if type(value) is str and _keeps_digits(key, value):
            return self.scrub(value, cards=False)
        return self._value(value, depth)

    def _value(self, value: object, depth: int = 0) -> object:
        if isinstance(value, str):
            return self.scrub(value)
        if depth > 8:
            return REDACTED  # deeper than anything we log on purpose
        if isinstance(value, MutableMapping | dict):
            return {str(k): self._field(str(k), v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._value(item, depth + 1) for item in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.scrub(str(value))

    def _clean(self, text: str) -> bool:
        """Whether :meth:`scrub` would leave ``text`` as it is (the usual case)."""
        return not _maybe_sensitive(text) and not any(secret in text for secret in self._secrets)

    def __call__(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        if self._line_is_clean(event_dict):
            return event_dict
        for key, value in list(event_dict.items()):
            if key.startswith("_"):
                continue
            if _is_sensitive(key):
                event_dict[key] = REDACTED
            elif type(value) in _PLAIN or (type(value) is str and self._clean(value)):
                continue  # a line's usual fields: nothing to copy or replace
            else:
                event_dict[key] = self._field(key, value, 0)
        return event_dict

    def _line_is_clean(self, event_dict: EventDict) -> bool:
        """Whether no field of the line needs anything done (the usual line): plain values and
        strings under keys that are not sensitive, and nothing in the strings that
        :meth:`_clean` looks for. The strings are searched joined, in one pass, instead of one
        search per field (a line has a dozen: about a third of a line's cost). Joining cannot
        hide a match (each string is whole in the joined text) and may only add one across
        two fields, which sends the line down the field-by-field path: never less redaction."""
        strings = []
        references = []
        for key, value in event_dict.items():
            if key.startswith("_"):
                continue
            if _is_sensitive(key):
                return False
            kind = type(value)
            if kind is str:
                if _keeps_digits(key, value):
                    # What _field does with it: letters glued to digits hold nothing the
                    # patterns look for but a card-like run, which it keeps; only a
                    # configured secret could be in it. Searched with the patterns, its
                    # 13 or more digits sent every line naming a transaction (each callback's)
                    # down the field-by-field path, at three times the cost.
                    references.append(value)
                else:
                    strings.append(value)
            elif kind not in _PLAIN:
                return False
        joined = "\x00".join(strings)
        if _maybe_sensitive(joined):
            return False
        if references:
            joined = "\x00".join((joined, *references))
        return not any(secret in joined for secret in self._secrets)


# Exactly these types (not subclasses: an enum member is an int or a str with its own str()).
_PLAIN: Final = frozenset({int, float, bool, type(None)})


_COMMON: Final[list[Processor]] = [
    merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
]


def json_formatter(secrets: Iterable[str] = ()) -> ProcessorFormatter:
    """The formatter for any stdlib handler: redacted JSON, one object per line."""
    return ProcessorFormatter(
        foreign_pre_chain=[*_COMMON, record_extras],
        processors=[
            ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            Redactor(secrets),
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
    )


_HANDLER_NAME: Final = "paytabs-guard-json"


def configure_logging(
    level: str = "info", *, stream: IO[str] | None = None, secrets: Iterable[str] = ()
) -> logging.Handler:
    """Send every log record to ``stream`` (default stderr) as redacted JSON at ``level``.

    Replaces a handler installed by an earlier call; returns the new one (tests remove it).
    uvicorn's error logger is made to propagate so its lines are JSON too. Each request is
    logged once, by the service's own access line (``paytabs_guard.access``: request id,
    route, API key id, status, duration): uvicorn's access line and httpx's line per PayTabs
    call said the same again, and each cost a formatted JSON record on the request path.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    formatter = json_formatter(secrets)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    global _direct
    _direct = _DirectLines(handler, formatter)
    root.setLevel(level.upper())
    # The JSON line carries none of the caller's file and line, thread or process: without
    # these, each record skips a walk up the stack and three lookups (4 of a line's 38 us).
    logging._srcfile = None  # the switch logging's own source documents
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    errors = logging.getLogger("uvicorn.error")  # where uvicorn logs a request's exception
    if not any(isinstance(f, ShutdownCancel) for f in errors.filters):
        errors.addFilter(ShutdownCancel())
    # No handler anywhere above it: uvicorn then does not even build its access line.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    # httpx logs every request at info; PayTabs calls are in the metrics, the traces and, when
    # they fail, in our own warnings. Its warnings and errors still come through.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
    # Alembic lists every plugin it loads ("setup plugin ...", seven lines per start) at info;
    # the migrations it runs (alembic.runtime.migration) are worth keeping.
    logging.getLogger("alembic.runtime.plugins").setLevel(max(root.level, logging.WARNING))
    return handler


_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}


class _DirectLines:
    """Our own lines written straight to the handler :func:`configure_logging` installed,
    when that handler is the only place a record could go (no other handler, filter or
    stopped propagation on the way from the logger to the root, as when the service runs).

    The line is the one the handler's formatter would write, rendered by the same
    processors, under the handler's lock. What it skips: the stdlib ``LogRecord``, the copy
    ``ProcessorFormatter`` makes of it, and the ``Formatter`` pass that only returns the
    rendered text (about a third of a line's cost, 12 of 35 us, and a callback writes two).
    Anything else attached on the way (a test's log capture, an operator's own handler) sends
    the line through ``logging`` as before, so it reaches them too."""

    def __init__(self, handler: logging.StreamHandler[IO[str]], formatter: ProcessorFormatter):
        self._handler = handler
        self._formatter = formatter
        meta = ProcessorFormatter.remove_processors_meta  # the record's keys, absent here
        self._processors = [p for p in formatter.processors if p is not meta]

    def takes(self, logger: logging.Logger, level: int) -> bool:
        """Whether ``logging`` would hand this logger's record to our handler alone."""
        handler = self._handler
        root = logging.root
        node: logging.Logger | None = logger
        while node is not root:
            if node is None or node.handlers or node.filters or not node.propagate:
                return False
            node = node.parent
        handlers = root.handlers
        return (
            len(handlers) == 1
            and handlers[0] is handler
            and not root.filters
            and not handler.filters
            and handler.formatter is self._formatter
            and level >= handler.level
        )

    def write(self, logger: logging.Logger, method_name: str, event_dict: EventDict) -> bool:
        """Write the line; False when it could not be rendered (``logging`` then reports it)."""
        try:
            line: Any = event_dict
            for processor in self._processors:
                line = processor(logger, method_name, line)
            text = line + self._handler.terminator
        except Exception:
            return False
        handler = self._handler
        with handler.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            try:
                handler.stream.write(text)
                handler.flush()
            except Exception:
                handler.handleError(logging.makeLogRecord({"name": logger.name, "msg": text}))
        return True


_direct: _DirectLines | None = None


def _to_handler(logger: logging.Logger, method_name: str, event_dict: EventDict) -> Any:
    """The last processor of our loggers: the line written directly where it may be
    (:class:`_DirectLines`), else handed to ``logging`` for ``ProcessorFormatter``."""
    direct = _direct
    if direct is not None:
        level = _LEVELS.get(method_name)
        written = (
            level is not None
            and direct.takes(logger, level)
            and direct.write(logger, method_name, event_dict)
        )
        if written:
            raise structlog.DropEvent  # structlog's way to stop here: nothing left to do
    return ProcessorFormatter.wrap_for_formatter(logger, method_name, event_dict)


def get_logger(name: str) -> BoundLogger:
    """A structlog logger writing through stdlib ``logging.getLogger(name)``."""
    logger: BoundLogger = structlog.wrap_logger(
        logging.getLogger(name),
        processors=[structlog.stdlib.filter_by_level, *_COMMON, _to_handler],
        wrapper_class=BoundLogger,
    )
    return logger


def bind_request_context(**values: Any) -> None:  # log fields are arbitrary JSON values
    """Start a fresh logging context (one request) with ``values`` on every line."""
    clear_contextvars()
    bind_contextvars(**values)


def clear_request_context() -> None:
    clear_contextvars()
