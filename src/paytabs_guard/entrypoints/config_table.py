"""The configuration table of the README, generated from Settings so the two cannot drift."""

from __future__ import annotations

from pydantic import SecretStr

from paytabs_guard.setting_values import env_name
from paytabs_guard.settings import Settings


def _default(value: object) -> str:
    if value is None or value == ():
        return "(unset)"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"`{getattr(value, 'value', value)}`"


def config_table() -> str:
    """A Markdown table: variable, default, rule."""
    rows = ["| Variable | Default | Meaning and rule |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{env_name(name)}` | {_default(field.default)} | {field.description} |")
    return "\n".join(rows)
