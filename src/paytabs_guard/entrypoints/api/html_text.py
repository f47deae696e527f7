"""Text from merchants, shoppers or PayTabs, made safe to print in our HTML pages.

Escaping stops markup, but not bidirectional controls: a right-to-left override (U+202E) in an
order description is valid text that the browser obeys, reordering what follows it (an amount
or a file name read backwards), and an unclosed one can reach past the value into our own
words. So the embedding, override and isolate controls (U+202A-U+202E, U+2066-U+2069) are
printed as visible markers such as ``[U+202E]``, never obeyed (docs/webhook-security.md item
22), and free text is printed inside ``<bdi>``, so even ordinary right-to-left text (an Arabic
description on an English page) is laid out on its own and cannot move the text around it.
"""

from __future__ import annotations

import html
from typing import Final

BIDI_CONTROLS: Final = (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
_SHOWN: Final = {code: f"[U+{code:04X}]" for code in BIDI_CONTROLS}


def escape(value: object) -> str:
    """``value`` as text for an HTML body or a quoted attribute: markup escaped, bidirectional
    controls shown as ``[U+202E]``-style markers."""
    return html.escape(str(value), quote=True).translate(_SHOWN)


def isolated(value: object) -> str:
    """Free text someone else wrote, escaped and isolated from the text around it."""
    return f"<bdi>{escape(value)}</bdi>"
