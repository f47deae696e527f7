"""docs/api.md, rendered from the OpenAPI document so the reference cannot drift from the code
(``paytabs-guard openapi --markdown docs/api.md``; a test compares)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

_METHODS: Final = ("get", "post", "put", "patch", "delete")
JsonObject = Mapping[str, Any]  # OpenAPI JSON


def _type(schema: JsonObject) -> str:
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(f"`{v}`" for v in schema["enum"])  # a table cell escapes it
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        return f"map of {_type(extra) if isinstance(extra, Mapping) else 'any'}"
    return kind


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _limits(schema: JsonObject) -> str:
    """What a value must be beyond its type (range, length, pattern) and its default: what a
    client needs to send a valid one without a round of 422s."""
    if "anyOf" in schema:  # an optional value: [its schema, null]
        schema = next((s for s in schema["anyOf"] if s.get("type") != "null"), {})
    parts = []
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        parts.append(f"{low} to {high}")
    elif low is not None:
        parts.append(f"at least {low}")
    elif high is not None:
        parts.append(f"at most {high}")
    shortest, longest = schema.get("minLength"), schema.get("maxLength")
    if longest is not None:
        parts.append(f"{shortest or 0} to {longest} characters")
    elif shortest:
        parts.append(f"at least {shortest} characters")
    if schema.get("pattern"):
        parts.append(f"pattern `{schema['pattern']}`")
    if schema.get("default") is not None:
        parts.append(f"default {json.dumps(schema['default'])}")
    return "; ".join(parts)


def _described(spec: JsonObject, schema: JsonObject) -> str:
    """A parameter's or field's description, with its limits after it."""
    text = str(spec.get("description", "") or schema.get("description", "") or "")
    limits = _limits(schema)
    if not limits:
        return text
    return f"{text} ({limits})" if text else limits[0].upper() + limits[1:]


def _operation(path: str, method: str, op: JsonObject) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", ""]
    if op.get("summary"):
        lines += [str(op["summary"]) + ".", ""]
    if op.get("description"):
        lines += [str(op["description"]).strip(), ""]
    if op.get("security"):
        # the admin-only operations say so in their summary, and answer a merchant key 403
        if str(op.get("summary", "")).endswith("(admin)"):
            lines += ["Needs `Authorization: Bearer` with an admin key (ADMIN_API_KEYS).", ""]
        else:
            lines += ["Needs `Authorization: Bearer <API key>`.", ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for p in params:
            schema = p.get("schema", {})
            lines.append(
                f"| `{p['name']}` | {p['in']} | {_cell(_type(schema))} | "
                f"{'yes' if p.get('required') else 'no'} | {_cell(_described(p, schema))} |"
            )
        lines.append("")
    body = op.get("requestBody")
    if body:
        content = body.get("content", {})
        for media, spec in content.items():
            schema = spec.get("schema", {})
            lines += [f"Body ({media}): {_type(schema)}", ""]
            if "properties" in schema:  # described in place, not a named schema
                lines += _fields(schema)
    lines += ["| status | meaning |", "|---|---|"]
    for status, response in op.get("responses", {}).items():
        content = response.get("content", {})
        kinds = ", ".join(
            f"{media}" + (f" {_type(spec['schema'])}" if spec.get("schema") else "")
            for media, spec in content.items()
        )
        meaning = _cell(response.get("description", ""))
        lines.append(f"| {status} | {meaning}{' — ' + _cell(kinds) if kinds else ''} |")
    return [*lines, ""]


def _schema(name: str, schema: JsonObject) -> list[str]:
    return [f"### {name}", "", *_fields(schema)]


def _fields(schema: JsonObject) -> list[str]:
    """A schema's description and its fields as a table (a named schema, or a body described
    in place, like the PayTabs callback's)."""
    lines: list[str] = []
    if schema.get("description"):
        lines += [str(schema["description"]).strip(), ""]
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    if properties:
        lines += ["| field | type | required | description |", "|---|---|---|---|"]
        for field, spec in properties.items():
            lines.append(
                f"| `{field}` | {_cell(_type(spec))} | {'yes' if field in required else 'no'} | "
                f"{_cell(_described(spec, spec))} |"
            )
        lines.append("")
    elif "enum" in schema:
        lines += ["One of " + ", ".join(f"`{v}`" for v in schema["enum"]) + ".", ""]
    return lines


def render_markdown(document: JsonObject) -> str:
    """The API reference as Markdown."""
    info = document.get("info", {})
    lines = [
        "# API reference",
        "",
        "<!-- Generated by `paytabs-guard openapi --markdown docs/api.md`; do not edit. -->",
        "",
        f"{info.get('title', '')} (version {info.get('version', '')}). "
        "The machine-readable document is served at `/openapi.json` and kept in "
        "`docs/openapi.json`; interactive docs are at `/docs`.",
        "",
        str(info.get("description", "")),
        "",
        "## Endpoints",
        "",
    ]
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                lines += _operation(path, method, item[method])
    lines += ["## Schemas", ""]
    for name, schema in sorted(document.get("components", {}).get("schemas", {}).items()):
        lines += _schema(name, schema)
    return "\n".join(lines).rstrip() + "\n"


def render_json(document: JsonObject) -> str:
    return json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
