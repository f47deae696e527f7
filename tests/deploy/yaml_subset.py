"""A strict reader for the block-style YAML our deploy files are written in.

The project has no YAML library among its dependencies, and the deploy files need one only for
these tests, so this reads the subset they use and refuses anything else (flow collections,
anchors, tags, multi-document streams) with an error naming the line, rather than guessing:

* block mappings (``key: value``, ``key:`` with a nested block) and block sequences (``- ...``,
  including ``- key: value`` items that continue as a mapping);
* plain, single-quoted and double-quoted scalars, kept as strings (an empty value is None);
* literal (``|``, ``|-``) and folded (``>``, ``>-``) block scalars;
* full-line comments, and `` #`` comments after plain scalars.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

Node = str | list["Node"] | dict[str, "Node"] | None

_KEY = re.compile(r"^([A-Za-z0-9_.\-/]+|\"[^\"]*\"|'[^']*'):(?: |$)")
_BLOCK_SCALAR = re.compile(r"^[|>][+-]?$")


class YamlSubsetError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    indent: int
    text: str  # without indentation and trailing spaces


def load(text: str) -> Node:
    """The document in ``text`` (one block mapping or sequence)."""
    raw = text.splitlines()
    lines = []
    for number, line in enumerate(raw, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped == "---":
            lines.append(_Line(number, -1, ""))  # blank: kept for block scalars
            continue
        if "\t" in line[: len(line) - len(line.lstrip())]:
            raise YamlSubsetError(number, "tabs in indentation")
        lines.append(
            _Line(
                number,
                len(line) - len(line.lstrip(" ")),
                line.rstrip()[len(line) - len(line.lstrip(" ")) :],
            )
        )
    reader = _Reader(lines, raw)
    node, end = reader.block(reader.next_content(0), None)
    rest = reader.next_content(end)
    if rest < len(lines):
        raise YamlSubsetError(lines[rest].number, "unexpected content after the document")
    return node


class _Reader:
    def __init__(self, lines: list[_Line], raw: list[str]) -> None:
        self.lines = lines
        self.raw = raw

    def next_content(self, index: int) -> int:
        while index < len(self.lines) and self.lines[index].indent < 0:
            index += 1
        return index

    def block(self, index: int, parent_indent: int | None) -> tuple[Node, int]:
        if index >= len(self.lines):
            raise YamlSubsetError(self.lines[-1].number if self.lines else 0, "empty block")
        first = self.lines[index]
        if parent_indent is not None and first.indent <= parent_indent:
            raise YamlSubsetError(first.number, "expected an indented block")
        if first.text.startswith("- ") or first.text == "-":
            return self.sequence(index, first.indent)
        return self.mapping(index, first.indent)

    def sequence(self, index: int, indent: int) -> tuple[list[Node], int]:
        items: list[Node] = []
        while True:
            index = self.next_content(index)
            if index >= len(self.lines) or self.lines[index].indent < indent:
                return items, index
            line = self.lines[index]
            if line.indent > indent or not (line.text.startswith("- ") or line.text == "-"):
                raise YamlSubsetError(line.number, "expected '- ' at the sequence's indentation")
            content = line.text[2:].strip() if line.text != "-" else ""
            if not content:
                node, index = self.block(self.next_content(index + 1), indent)
            elif _KEY.match(content):
                # "- key: value" starts a mapping whose other keys sit under the key.
                inner = indent + 2 + (len(line.text[2:]) - len(line.text[2:].lstrip(" ")))
                self.lines[index] = _Line(line.number, inner, content)
                node, index = self.mapping(index, inner)
            else:
                node = self.scalar(content, line.number)
                index += 1
            items.append(node)

    def mapping(self, index: int, indent: int) -> tuple[dict[str, Node], int]:
        result: dict[str, Node] = {}
        while True:
            index = self.next_content(index)
            if index >= len(self.lines) or self.lines[index].indent < indent:
                return result, index
            line = self.lines[index]
            if line.indent > indent:
                raise YamlSubsetError(line.number, "unexpected indentation")
            match = _KEY.match(line.text)
            if match is None:
                raise YamlSubsetError(line.number, "expected 'key: value'")
            key = match.group(1).strip("\"'")
            if key in result:
                raise YamlSubsetError(line.number, f"duplicate key {key!r}")
            value = line.text[match.end() :].strip()
            if not value or value.startswith("#"):
                following = self.next_content(index + 1)
                nested_sequence = (
                    following < len(self.lines)
                    and self.lines[following].indent == indent
                    and self.lines[following].text.startswith("- ")
                )
                nested_block = following < len(self.lines) and self.lines[following].indent > indent
                if nested_sequence:
                    result[key], index = self.sequence(following, indent)
                elif nested_block:
                    result[key], index = self.block(following, indent)
                else:  # "key:" and nothing under it: null
                    result[key], index = None, following
            elif _BLOCK_SCALAR.match(value):
                result[key], index = self.block_scalar(index + 1, indent, value)
            else:
                result[key] = self.scalar(value, line.number)
                index += 1

    def block_scalar(self, index: int, indent: int, style: str) -> tuple[str, int]:
        body: list[str] = []
        content_indent: int | None = None
        while index < len(self.lines):
            raw = self.raw[self.lines[index].number - 1]
            actual = len(raw) - len(raw.lstrip(" "))
            if raw.strip() and actual <= indent:
                break
            if raw.strip():
                content_indent = actual if content_indent is None else content_indent
                body.append(raw[content_indent:].rstrip())
            else:
                body.append("")
            index += 1
        while body and not body[-1]:
            body.pop()
        if style.startswith(">"):
            text = re.sub(r"(?<!\n)\n(?!\n)", " ", "\n".join(body)).replace("\n\n", "\n")
        else:
            text = "\n".join(body)
        return (text if style.endswith("-") else text + "\n"), index

    def scalar(self, value: str, number: int) -> str:
        if value[0] in "[{&*!%@`":
            raise YamlSubsetError(number, f"unsupported YAML ({value[0]!r}); write block style")
        if value.startswith('"'):
            end = _closing_double_quote(value, number)
            _no_trailing(value[end + 1 :], number)
            return str(json.loads(value[: end + 1]))
        if value.startswith("'"):
            end = value.find("'", 1)
            while end != -1 and value[end + 1 : end + 2] == "'":
                end = value.find("'", end + 2)
            if end == -1:
                raise YamlSubsetError(number, "unterminated single-quoted string")
            _no_trailing(value[end + 1 :], number)
            return value[1:end].replace("''", "'")
        return value.split(" #", 1)[0].rstrip()


def _closing_double_quote(value: str, number: int) -> int:
    index = 1
    while index < len(value):
        if value[index] == "\\":
            index += 2
            continue
        if value[index] == '"':
            return index
        index += 1
    raise YamlSubsetError(number, "unterminated double-quoted string")


def _no_trailing(rest: str, number: int) -> None:
    rest = rest.strip()
    if rest and not rest.startswith("#"):
        raise YamlSubsetError(number, f"unexpected text after a quoted string: {rest!r}")
