"""Opaque page cursors: ``<kind>:<position>`` in URL-safe base64 without padding.

A client passes back the ``next_cursor`` of the previous page unchanged; the kind keeps a
cursor of one listing (payments, events, dead letters) from being taken by another.
"""

from __future__ import annotations

import base64
import binascii

from .problems import Problem


def encode_cursor(kind: str, position: str | int | None) -> str | None:
    """The cursor for the page after ``position``; None when there is no next page."""
    if position is None:
        return None
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str | None) -> str | None:
    """The position a ``kind`` cursor holds (None without one); a 400 problem when it is not
    a cursor of that kind."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        text = ""
    prefix, _, position = text.partition(":")
    # Every position we hand out is printable ASCII (an id, a number); anything else was made
    # up, and a NUL would reach PostgreSQL, which cannot hold it in text, as an error of its own.
    if prefix != kind or not position or not (position.isascii() and position.isprintable()):
        raise invalid_cursor()
    return position


def decode_number_cursor(kind: str, cursor: str | None) -> int | None:
    """:func:`decode_cursor` for a listing paged by a sequence number."""
    position = decode_cursor(kind, cursor)
    if position is None:
        return None
    if not (position.isascii() and position.isdigit()) or len(position) > 18:  # not "٣"
        raise invalid_cursor()
    return int(position)


def invalid_cursor() -> Problem:
    """400: not a cursor this listing gave out."""
    return Problem(
        "invalid_cursor",
        "Invalid cursor",
        400,
        "Pass back the next_cursor of the previous page unchanged.",
    )
