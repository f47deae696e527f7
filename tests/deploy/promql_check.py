"""A small structural check of PromQL expressions, for where promtool is not installed.

It tokenises an expression and reports: unbalanced brackets, unterminated strings, calls of
functions PromQL does not have, and the metric names it selects (identifiers in selector
position: not functions, keywords, label names in ``by (...)``/``on (...)`` lists, nor anything
inside ``{...}`` matchers, strings or ``[...]`` ranges). The caller compares those names with
the metrics the service exports. It is not a full parser: promtool, where present, is run too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FUNCTIONS = frozenset(
    {
        "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp",
        "clamp_max", "clamp_min", "count_over_time", "day_of_month", "day_of_week", "delta",
        "deriv", "exp", "floor", "histogram_quantile", "holt_winters", "hour", "idelta",
        "increase", "irate", "label_join", "label_replace", "last_over_time", "ln", "log2",
        "log10", "max_over_time", "min_over_time", "minute", "month", "predict_linear",
        "quantile_over_time", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc",
        "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "time", "timestamp",
        "vector", "year",
    }
)  # fmt: skip
AGGREGATIONS = frozenset(
    {
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile",
    }
)  # fmt: skip
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"}) | LABEL_LIST_KEYWORDS

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>\d+(?:\.\d+)?(?:[smhdwy]|ms)?(?:\d+(?:[smhdwy]|ms))*|\.\d+)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<open>[({\[])
  | (?P<close>[)}\]])
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=,@:])
    """,
    re.VERBOSE,
)
_PAIRS = {")": "(", "]": "[", "}": "{"}


@dataclass
class Check:
    """What :func:`check` found in one expression."""

    metrics: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def check(expression: str) -> Check:
    result = Check()
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            result.problems.append(f"cannot read {expression[position : position + 20]!r}")
            return result
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append((kind, match.group()))
        position = match.end()

    stack: list[str] = []
    label_list_depth: int | None = None  # stack depth of a by (...) / on (...) list
    expect_label_list = False
    for index, (kind, text) in enumerate(tokens):
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if kind == "open":
            if expect_label_list and text == "(":
                label_list_depth = len(stack) + 1
            expect_label_list = False
            stack.append(text)
            continue
        if kind == "close":
            if not stack or stack[-1] != _PAIRS[text]:
                result.problems.append(f"unbalanced {text!r}")
                return result
            if label_list_depth == len(stack):
                label_list_depth = None
            stack.pop()
            continue
        if kind != "ident":
            continue
        inside_matcher_or_range = any(bracket in "{[" for bracket in stack)
        if inside_matcher_or_range or label_list_depth is not None:
            continue
        lowered = text.lower()
        if lowered in LABEL_LIST_KEYWORDS:
            expect_label_list = True
            continue
        if lowered in KEYWORDS:
            continue
        if lowered in AGGREGATIONS:
            continue
        if following == "(":
            if text not in FUNCTIONS:
                result.problems.append(f"unknown function {text!r}")
            continue
        result.metrics.add(text)
    if stack:
        result.problems.append(f"unclosed {''.join(stack)!r}")
    return result
