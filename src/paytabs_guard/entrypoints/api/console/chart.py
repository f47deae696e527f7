"""The breakers' last hour as one small inline SVG: a band per breaker, coloured by state, with
a dot per recovery probe (green answered, red failed).

A stretch away from closed is drawn at least ``MIN_WIDTH`` wide, so an opening of a few
seconds is still visible on an hour's scale (its tooltip has the real times). Inline SVG is
part of the page, so it needs no request and no CSP exception, and it scales
with the page (``viewBox``). Time runs left to right in both languages, like a clock face.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from paytabs_guard.resilience.history import BreakerHistory, ProbeVerdict, Segment

from .layout import e, when

SPAN: Final = timedelta(hours=1)
WIDTH: Final = 720
LABEL: Final = 120  # room for a breaker's name at the larger type a phone gets
ROW: Final = 28
MIN_WIDTH: Final = 4.0
COLOURS: Final = {
    "closed": "#2f9e5b",
    "forced_closed": "#2f9e5b",
    "half_open": "#e0a100",
    "open": "#d0263a",
    "forced_open": "#d0263a",
    "disabled": "#8a93a5",
}


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    segments: Sequence[Segment]
    probes: Sequence[ProbeVerdict]


def rows(history: BreakerHistory, states: Mapping[str, str], now: datetime) -> list[Row]:
    """One row per breaker (``states``: its current state) over the hour before ``now``."""
    return [
        Row(
            name,
            history.segments(name, now=now, current=state, span=SPAN),
            history.probes(name, now - SPAN),
        )
        for name, state in states.items()
    ]


def _x(at: datetime, now: datetime) -> float:
    share = 1 - (now - at).total_seconds() / SPAN.total_seconds()
    return LABEL + max(0.0, min(1.0, share)) * (WIDTH - LABEL)


def svg(chart_rows: Sequence[Row], now: datetime, labels: Mapping[str, str]) -> str:
    """The chart; ``labels`` has the words for hour_ago, half_hour_ago, now and the title."""
    height = ROW * len(chart_rows) + 24
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {WIDTH} {height}' "
        f"width='{WIDTH}' height='{height}' role='img' aria-label='{e(labels['chart_title'])}' "
        "font-family='system-ui,sans-serif' font-size='12'>"
    ]
    for index, row in enumerate(chart_rows):
        top = index * ROW + 4
        parts.append(f"<text x='0' y='{top + 15}' fill='#1d2330'>{e(row.name)}</text>")
        # Closed first, so a widened opening is drawn over its neighbours, not under them.
        for segment in sorted(row.segments, key=lambda segment: segment.state != "closed"):
            x1, x2 = _x(segment.start, now), _x(segment.end, now)
            colour = COLOURS.get(segment.state, "#8a93a5")
            if segment.state != "closed" and x2 - x1 < MIN_WIDTH:
                x1 = min(x1, WIDTH - MIN_WIDTH)
                x2 = x1 + MIN_WIDTH
            parts.append(
                f"<rect x='{x1:.1f}' y='{top}' width='{max(x2 - x1, 1.0):.1f}' height='18' "
                f"fill='{colour}' data-state='{e(segment.state)}'><title>{e(row.name)}: "
                f"{e(segment.state)} {e(when(segment.start))} - {e(when(segment.end))}"
                "</title></rect>"
            )
        for probe in row.probes:
            # (the verdict as the breaker's probe event says it: "succeeded" or "failed")
            colour = "#0a5a2c" if probe.verdict == "succeeded" else "#8a0016"
            parts.append(
                f"<circle cx='{_x(probe.at, now):.1f}' cy='{top + 9}' r='3.5' fill='#fff' "
                f"stroke='{colour}' stroke-width='2'><title>probe {e(probe.verdict)} "
                f"{e(when(probe.at))}</title></circle>"
            )
    axis = ROW * len(chart_rows) + 18
    middle = (LABEL + WIDTH) / 2
    parts.append(
        f"<text x='{LABEL}' y='{axis}' fill='#5b6478'>{e(labels['hour_ago'])}</text>"
        f"<text x='{middle}' y='{axis}' fill='#5b6478' text-anchor='middle'>"
        f"{e(labels['half_hour_ago'])}</text>"
        f"<text x='{WIDTH}' y='{axis}' fill='#5b6478' text-anchor='end'>{e(labels['now'])}"
        "</text></svg>"
    )
    return "".join(parts)
