"""Read a request body with a hard size limit (docs/webhook-security.md, checklist item 18).

Two checks, because a chunked upload has no ``Content-Length``:

1. A declared ``Content-Length`` over the limit is refused at once; nothing is read.
2. While streaming, the running total is checked after every chunk; the read stops as soon as it
   passes the limit. At most ``limit`` bytes are kept, plus the one chunk the server already
   holds, so memory stays bounded whatever the sender does.

Reading stops early, so the caller must answer (413) without touching the body again; the
server then closes the connection instead of draining the rest (``http_head_limit.py``).

3. The whole body must arrive within a deadline (``within``, HTTP 408): uvicorn has no
   timeout of its own for a body, so a client that declares 500 bytes and sends 5 would hold
   the connection and a task for as long as it liked.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, Sequence
from contextlib import aclosing
from typing import Final

from starlette.requests import Request

_DIGITS: Final = re.compile(r"[0-9]{1,19}")


class BodyError(Exception):
    """The body cannot be accepted; the subclass says which HTTP answer fits."""


class BodyTooLarge(BodyError):
    """The body is, or declares itself, larger than ``limit`` bytes (HTTP 413)."""

    def __init__(self, limit: int, *, declared: int | None = None) -> None:
        how = f"declares {declared} bytes" if declared is not None else "streamed past the limit"
        super().__init__(f"the body {how}; the limit is {limit} bytes")
        self.limit = limit
        self.declared = declared


class BodyTooSlow(BodyError):
    """The body did not arrive whole within ``seconds`` (HTTP 408)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the body did not arrive within {seconds:g} s")
        self.seconds = seconds


class InvalidContentLength(BodyError):
    """``Content-Length`` is not one non-negative decimal integer (HTTP 400)."""

    def __init__(self) -> None:
        super().__init__("Content-Length must be a single non-negative decimal integer")


def coded(content_encodings: Sequence[str], transfer_encodings: Sequence[str]) -> bool:
    """Whether a body comes encoded in a way nothing here undoes: a ``Content-Encoding`` other
    than ``identity`` (gzip, br), or a ``Transfer-Encoding`` other than ``chunked`` (``gzip,
    chunked``: the server de-chunks it and hands over the gzip). Read as sent, a compressed
    body fails as bad UTF-8, and one only marked compressed is taken as plain."""

    def codings(values: Sequence[str]) -> set[str]:
        return {item.strip().lower() for value in values for item in value.split(",")} - {""}

    return bool(codings(content_encodings) - {"identity"}) or bool(
        codings(transfer_encodings) - {"chunked"}
    )


def _check_limit(limit: int) -> None:
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")


def declared_length(values: Sequence[str], limit: int) -> int | None:
    """The declared ``Content-Length`` (``None`` if absent), refused at once when over ``limit``.

    ``values`` is every ``Content-Length`` header value. Repeated identical values are one value
    (RFC 9110 §8.6); differing ones, signs, spaces inside, or non-ASCII digits are invalid.
    """
    _check_limit(limit)
    if not values:
        return None
    distinct = {item.strip(" \t") for value in values for item in value.split(",")}
    if len(distinct) != 1:
        raise InvalidContentLength
    (text,) = distinct
    if not _DIGITS.fullmatch(text):
        raise InvalidContentLength
    length = int(text)
    if length > limit:
        raise BodyTooLarge(limit, declared=length)
    return length


async def read_limited(
    chunks: AsyncIterable[bytes], limit: int, *, within: float | None = None
) -> bytes:
    """Join ``chunks``, raising :class:`BodyTooLarge` as soon as the total passes ``limit``
    and :class:`BodyTooSlow` when they have not all come ``within`` seconds."""
    _check_limit(limit)
    if within is None:
        return await _join(chunks, limit)
    try:
        async with asyncio.timeout(within):
            return await _join(chunks, limit)
    except TimeoutError:
        raise BodyTooSlow(within) from None


async def _join(chunks: AsyncIterable[bytes], limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge(limit)
        parts.append(chunk)
    return b"".join(parts)


async def read_body_limited(request: Request, limit: int, *, within: float | None = None) -> bytes:
    """The raw body of ``request``, at most ``limit`` bytes, checked both ways (module docs),
    and whole ``within`` seconds.

    Raises :class:`BodyTooLarge`, :class:`BodyTooSlow` or :class:`InvalidContentLength`; a
    client that disconnects mid-body raises Starlette's ``ClientDisconnect``.
    """
    declared_length(request.headers.getlist("content-length"), limit)
    # aclosing: stopping early must still close the stream generator, not leave it to the GC.
    async with aclosing(request.stream()) as chunks:
        return await read_limited(chunks, limit, within=within)
