"""How a command tells the operator about the configuration: a line per problem, and a
warning per variable that looks like a setting but is none. ``PAYTABS_SERVERKEY`` or
``CIRCUIT_BREAKER_THRESHOLD`` is otherwise ignored without a word, and the service runs on the
default the operator meant to change (or refuses to start for a "required" variable that is
right there, misspelt). Each warning names the setting it most likely meant.

A name is suspect when it starts with a prefix only our settings use, or when it is a near
miss of a setting's name (``DATABASE_URI``). Other software's variables (``PATH``, ``OTEL_*``)
pass: they share neither.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

#: Prefixes no other program's variables are expected to use beside ours.
OUR_PREFIXES: Final = (
    "PAYTABS_",
    "CIRCUIT_BREAKER_",
    "WEBHOOK_",
    "EVENTS_",
    "PREFER_WAIT_",
    "PAYPAGE_",
    "RECONCILE_",
)

#: Variables with our prefixes that are read elsewhere than the settings (the benchmarks).
_INTERNAL_PREFIX: Final = "PAYTABS_GUARD_"

#: How alike a name must be to a setting's to be taken for a misspelling of it, and to be
#: offered as the one meant when the name has our prefix anyway.
_NEAR: Final = 0.85
_SUGGEST: Final = 0.75


def print_config_problems(problems: Sequence[str]) -> None:
    """The problems on stderr, one line each, then the variables that may explain them."""
    for problem in problems:
        print(f"configuration error: {problem}", file=sys.stderr)
    for warning in misspelt_settings():
        print(f"warning: {warning}", file=sys.stderr)


def misspelt_settings() -> list[str]:
    """:func:`unknown_variable_warnings` for the process's environment and ``./.env``."""
    from paytabs_guard.settings import Settings

    return unknown_variable_warnings(name.upper() for name in Settings.model_fields)


def unknown_variable_warnings(
    known: Iterable[str],
    environ: Mapping[str, str] | None = None,
    env_file: str | None = ".env",
) -> list[str]:
    """A warning per variable in ``environ`` (default: the process's) or ``env_file`` that
    looks like a setting in ``known`` (upper-case names) but is none; names only, never a
    value."""
    names = set(known)
    seen = {name.upper() for name in (os.environ if environ is None else environ)}
    seen |= _file_names(env_file)
    warnings = []
    for name in sorted(seen - names):
        ours = name.startswith(OUR_PREFIXES) and not name.startswith(_INTERNAL_PREFIX)
        close = difflib.get_close_matches(name, names, n=1, cutoff=_SUGGEST if ours else _NEAR)
        if not ours and not close:
            continue
        hint = f"; did you mean {close[0]}?" if close else " (see `paytabs-guard config table`)"
        warnings.append(f"{name}: not a setting paytabs-guard reads, so it is ignored{hint}")
    return warnings


def _file_names(env_file: str | None) -> set[str]:
    """The names a ``.env`` file sets, as the settings would read them; an unreadable file is
    the settings' own error to report, not this check's."""
    if env_file is None or not Path(env_file).is_file():
        return set()
    from dotenv import dotenv_values  # pydantic-settings' own reader of the file

    try:
        return {name.upper() for name in dotenv_values(env_file, encoding="utf-8")}
    except (OSError, UnicodeDecodeError):
        return set()
