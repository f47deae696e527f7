"""The chaos benchmark's outputs: terminal tables (rich), JSON, and an SVG chart drawn by hand.

The chart has one row per scenario: on the left the share of orders that completed, by when they
arrived; on the right the p95 of create-request latency, by when the request was sent. One line
per configuration; the gateway's outage windows are shaded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from .scenarios import Configuration, Profile

JsonObject = dict[str, Any]

COLOURS: Final = {"full": "#1b7837", "wait": "#1f78b4", "retries": "#d95f02", "none": "#7570b3"}
DASHES: Final = {"full": "", "wait": "5 2 1 2", "retries": "7 3", "none": "2 3"}
"""Overlapping lines (100 % in every configuration) stay visible through each other's gaps."""
FAIL_FAST_TARGET: Final = 0.010
SUCCESS_TARGET: Final = 0.999
ORACLE_TARGET: Final = 0.97
CLOSED_P50_TARGET: Final = 1.5
CLOSED_WORST_TARGET: Final = 3.0
TOLERANCE: Final = {"full": 0.01, "short": 0.03, "tiny": 0.05}
"""Points of success rate the breaker may lose to a configuration without it, for noise."""


# ---- formatting -----------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    if value is None:
        return "-"
    text = f"{100 * value:.2f}"
    return text.rstrip("0").rstrip(".") + " %" if "." in text else text + " %"


def _s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.1f}"


def _p50_worst(summary: JsonObject, count: int, of: int) -> str:
    if not count:
        return "-"
    suffix = f" ({count} of {of})" if of > 1 else ""
    return f"{_s(summary['p50'], 1)} / {_s(summary['worst'], 1)}{suffix}"


def _closed(run: JsonObject) -> str:
    summary = run["recovery_summary"]
    text = _p50_worst(summary["closed"], summary["closed_count"], summary["outages"])
    if summary["never_closed"]:
        text += f", {summary['never_closed']} never"
    return text


def _first_page(run: JsonObject) -> str:
    summary = run["recovery_summary"]
    if not summary["outages"]:
        return "-"
    if not summary["first_page_count"]:
        return "never"
    return _p50_worst(summary["first_page"], summary["first_page_count"], summary["outages"])


def _probes(run: JsonObject) -> str:
    probes = run["probes"]
    instances = probes["instances"]
    if len(instances) > 1:
        return " / ".join(str(_sent(i)) for i in instances)
    return str(_sent(instances[0])) if instances else "0"


def _gateway_calls(gateway: JsonObject) -> str:
    during = gateway.get("during_outages")
    total = str(gateway["requests_total"])
    return total if during is None else f"{total} ({during})"


def _sent(instance: JsonObject) -> int:
    """Probes an instance sent: its stats endpoint's count, or its probe events."""
    return max(int(instance["sent_by_endpoint"]), int(instance["events"]))


def scenario_label(scenario: JsonObject) -> str:
    runs: list[JsonObject] = list(scenario["runs"].values())
    share = runs[0]["oracle"]["share"] if runs else None
    return f"{scenario['title']} (oracle {_pct(share)})"


def print_settings(
    console: Console,
    profile: Profile,
    configurations: Sequence[Configuration],
    seed: int,
    layout: str,
) -> None:
    console.print(
        f"[bold]paytabs-guard bench chaos[/bold] - profile {profile.name}, seed {seed}, "
        f"simulator {layout}, {profile.rate:g} orders/s, merchant budget "
        f"{profile.order_budget:g} s to get a page, {profile.completion_budget:g} s to complete"
    )
    table = Table(title="service configuration", title_justify="left")
    table.add_column("variable")
    for configuration in configurations:
        table.add_column(configuration.key, justify="right")
    envs = [profile.service_env(c) for c in configurations]
    for name in envs[0]:
        table.add_row(name, *(env[name] for env in envs))
    table.add_row(
        "breakers", *("enabled" if c.breaker else "disabled (every family)" for c in configurations)
    )
    console.print(table)
    for scenario in profile.scenarios:
        extra = ""
        if scenario.rate is not None or scenario.order_budget is not None:
            extra = (
                f", {scenario.arrival_rate(profile.rate):g} orders/s, budget "
                f"{scenario.budget(profile.order_budget):g} s"
            )
        if scenario.instances > 1:
            extra += f", {scenario.instances} instances"
        console.print(
            f"  {scenario.title}: {scenario.description} ({scenario.duration:g} s{extra})"
        )


RESULT_COLUMNS: Final = (
    ("scenario", "left"),
    ("configuration", "left"),
    ("orders", "right"),
    ("success", "right"),
    ("of oracle", "right"),
    ("1st try", "right"),
    ("dup charges", "right"),
    ("create p50/p95/p99 s", "right"),
    ("fail-fast p50/p99 ms (n)", "right"),
    ("in service p50/p99 ms", "right"),
    ("up → closed p50/worst s", "right"),
    ("up → 1st page p50/worst s", "right"),
    ("probes", "right"),
    ("events lost", "right"),
    ("gateway calls (in outages)", "right"),
)


def result_rows(document: JsonObject) -> list[list[str]]:
    """One row per scenario and configuration, as printed and as written to Markdown."""
    rows: list[list[str]] = []
    for scenario in document["scenarios"]:
        first = True
        for key, run in scenario["runs"].items():
            orders = run["orders"]
            latency = run["create_latency"]
            fast = run["fail_fast"]
            rows.append(
                [
                    scenario_label(scenario) if first else "",
                    key,
                    str(orders["attempted"]),
                    _pct(orders["success_rate"]),
                    _pct(run["share_of_oracle"]["share"]),
                    _pct(orders["first_try_success_rate"]),
                    str(run["duplicates"]["extra_charges"]),
                    f"{_s(latency['p50'])} / {_s(latency['p95'])} / {_s(latency['p99'])}",
                    f"{_ms(fast['p50'])} / {_ms(fast['p99'])} ({fast['count']})"
                    if fast["count"]
                    else "-",
                    _fail_fast_service(run),
                    _closed(run),
                    _first_page(run),
                    _probes(run),
                    str(run["events"]["lost"]),
                    _gateway_calls(run["gateway"]),
                ]
            )
            first = False
    return rows


def _fail_fast_service(run: JsonObject) -> str:
    fast = run.get("fail_fast_service") or {"count": 0}
    return f"{_ms(fast['p50'])} / {_ms(fast['p99'])}" if fast["count"] else "-"


def _fail_fast_target(document: JsonObject) -> JsonObject:
    """Judged inside the service (request in → answer out), where the breaker's cost is; the
    merchants' round trip is printed beside it: their HTTP client shares this process's event
    loop with the service, so it adds the load generator's own queue."""
    target = "fail-fast p99 <= 10 ms while the breaker is open (in the service)"
    runs = [
        (scenario["key"], run)
        for scenario, key, run in _runs(document)
        if key == "full" and run["fail_fast"]["count"]
    ]
    if not runs:
        return {"target": target, "measured": "the breaker never rejected a create", "met": None}
    service: list[tuple[str, JsonObject]] = [
        (str(k), run.get("fail_fast_service") or {"count": 0}) for k, run in runs
    ]
    measured = [(k, f) for k, f in service if f["count"]]
    where = ", ".join(f"({k}) {_ms(f['p99'])} ms n={f['count']}" for k, f in measured)
    merchants = ", ".join(f"({k}) {_ms(run['fail_fast']['p99'])} ms" for k, run in runs)
    met = max(f["p99"] for _, f in measured) <= FAIL_FAST_TARGET if measured else None
    return {
        "target": target,
        "measured": f"{where or 'not recorded'}; merchants' round trip p99 {merchants}",
        "met": met,
    }


def target_rows(document: JsonObject) -> list[list[str]]:
    rows = []
    for item in document["targets"]:
        met = item["met"]
        rows.append(
            [
                item["target"],
                item["measured"],
                "n/a" if met is None else ("yes" if met else "**no**"),
            ]
        )
    return rows


def print_results(console: Console, document: JsonObject) -> None:
    table = Table(title="chaos results", title_justify="left")
    for column, justify in RESULT_COLUMNS:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    previous = None
    for row in result_rows(document):
        if row[0] and previous is not None:
            table.add_section()
        table.add_row(*row)
        previous = row
    console.print(table)
    targets_table = Table(title="targets", title_justify="left")
    for column in ("target", "measured", "met"):
        targets_table.add_column(column)
    for row in target_rows(document):
        targets_table.add_row(*(cell.replace("**", "") for cell in row))
    console.print(targets_table)
    console.print(
        f"total {document['total_seconds']:.0f} s; machine: {document['machine']['nproc']} CPU "
        f"({document['machine']['cpu_model']}), Python {document['machine']['python']}"
    )


def render_markdown(document: JsonObject) -> str:
    def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
        lines = ["| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join("--:" if r else "---" for r in right) + "|")
        lines += [
            "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows
        ]
        return "\n".join(lines)

    header = [name for name, _ in RESULT_COLUMNS]
    right = [justify == "right" for _, justify in RESULT_COLUMNS]
    parts = [
        table(header, result_rows(document), right),
        "",
        table(["target", "measured", "met"], target_rows(document), [False, False, False]),
        "",
    ]
    return "\n".join(parts)


def write_markdown(path: Path, document: JsonObject) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(document), encoding="utf-8")


# ---- targets --------------------------------------------------------------------------------


def _runs(document: JsonObject) -> Iterable[tuple[JsonObject, str, JsonObject]]:
    for scenario in document["scenarios"]:
        for key, run in scenario["runs"].items():
            yield scenario, key, run


def targets(document: JsonObject) -> list[JsonObject]:
    """The issue's targets, each with what was measured and whether it was met (None: the run
    had nothing to measure it on)."""
    out: list[JsonObject] = []
    a_full = [
        run for scenario, key, run in _runs(document) if scenario["key"] == "a" and key == "full"
    ]
    if a_full:
        rate = a_full[0]["orders"]["success_rate"]
        out.append(
            {
                "target": "(a) success >= 99.9 % with full protection",
                "measured": f"{_pct(rate)} of {a_full[0]['orders']['attempted']} orders",
                "met": rate is not None and rate >= SUCCESS_TARGET,
            }
        )
    extra = sum(run["duplicates"]["extra_charges"] for _, _, run in _runs(document))
    out.append(
        {
            "target": "zero duplicate charges, every configuration",
            "measured": f"{extra} extra charges",
            "met": extra == 0,
        }
    )
    out.append(_fail_fast_target(document))
    out += _gateway_targets(document)
    out += _recovery_targets(document)
    out += _first_page_targets(document)
    out += _oracle_targets(document)
    lost = sum(run["events"]["lost"] for _, _, run in _runs(document))
    delivered = sum(run["events"]["completed_payments"] for _, _, run in _runs(document))
    out.append(
        {
            "target": "zero events lost anywhere",
            "measured": f"{lost} lost of {delivered} payment.completed",
            "met": lost == 0,
        }
    )
    return out


def _gateway_targets(document: JsonObject) -> list[JsonObject]:
    """During outages, full protection sends the gateway at most 1/3 of the calls that no
    protection sends (probes included)."""
    ratios = []
    for scenario in document["scenarios"]:
        runs = scenario["runs"]
        full = runs.get("full", {}).get("gateway", {}).get("during_outages")
        none = runs.get("none", {}).get("gateway", {}).get("during_outages")
        if full is not None and none:
            ratios.append((scenario["key"], full, none))
    if not ratios:
        return []
    return [
        {
            "target": "during outages the gateway sees <= 1/3 of the calls it sees without a "
            "breaker (probes included)",
            "measured": ", ".join(f"({k}) {f} vs {n}" for k, f, n in ratios),
            "met": all(f * 3 <= n for _, f, n in ratios),
        }
    ]


def _recovery_targets(document: JsonObject) -> list[JsonObject]:
    """Gateway up -> breaker closed, over every outage of every scenario, full protection."""
    closes: list[float] = []
    never = 0
    for _, key, run in _runs(document):
        if key != "full":
            continue
        summary = run["recovery_summary"]
        never += summary["never_closed"]
        closes += [
            i["breaker_closed_after"]
            for i in run["recovery"]
            if i["breaker_closed_after"] is not None
        ]
    if not closes and not never:
        return [
            {
                "target": "breaker closed <= 1.5 s (p50) and <= 3 s (worst) after recovery",
                "measured": "the breaker was never open when the gateway recovered",
                "met": None,
            }
        ]
    p50 = _median(closes)
    worst = max(closes, default=None)
    text = f"p50 {_s(p50, 2)} s, worst {_s(worst, 2)} s over {len(closes)} recoveries"
    if never:
        text += f"; {never} never closed"
    return [
        {
            "target": "breaker closed <= 1.5 s (p50) and <= 3 s (worst) after recovery",
            "measured": text,
            "met": not never
            and p50 is not None
            and worst is not None
            and p50 <= CLOSED_P50_TARGET
            and worst <= CLOSED_WORST_TARGET,
        }
    ]


def _first_page_targets(document: JsonObject) -> list[JsonObject]:
    """Gateway up -> first page: full protection no later than the same service without a
    breaker (retries only), p50 over each scenario's recoveries."""
    target = "first page after a recovery no later than without a breaker (p50, per scenario)"
    rows: list[str] = []
    late: list[str] = []
    for scenario in document["scenarios"]:
        runs = scenario["runs"]
        if "full" not in runs or "retries" not in runs:
            continue
        ours = runs["full"]["recovery_summary"]["first_page"]["p50"]
        without = runs["retries"]["recovery_summary"]["first_page"]["p50"]
        if ours is None or without is None:
            continue
        rows.append(f"({scenario['key']}) {_s(ours, 2)} vs {_s(without, 2)} s")
        if ours > without:
            late.append(scenario["key"])
    if not rows:
        return [{"target": target, "measured": "no recovery to compare", "met": None}]
    return [{"target": target, "measured": ", ".join(rows), "met": not late}]


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _oracle_targets(document: JsonObject) -> list[JsonObject]:
    """Full protection completes >= 97 % of the oracle, and never fewer orders than a
    configuration without a breaker (within the profile's tolerance)."""
    out: list[JsonObject] = []
    tolerance = TOLERANCE.get(str(document.get("profile")), 0.03)
    shares, behind = [], []
    for scenario in document["scenarios"]:
        runs = scenario["runs"]
        if "full" not in runs:
            continue
        full = runs["full"]
        share = full["share_of_oracle"]["share"]
        shares.append((scenario["key"], share))
        for other in ("retries", "none"):
            if other in runs:
                gap = runs[other]["orders"]["success_rate"] - full["orders"]["success_rate"]
                if gap > tolerance:
                    behind.append(f"({scenario['key']}) {other} +{100 * gap:.1f} pts")
    if not shares:
        return out
    out.append(
        {
            "target": ">= 97 % of the oracle with full protection, every scenario",
            "measured": ", ".join(f"({k}) {_pct(v)}" for k, v in shares),
            "met": all(v is not None and v >= ORACLE_TARGET for _, v in shares),
        }
    )
    out.append(
        {
            "target": f"full protection never completes fewer orders than retries-only or no "
            f"protection (tolerance {100 * tolerance:g} pts)",
            "measured": "; ".join(behind) or "never fewer",
            "met": not behind,
        }
    )
    return out


def oracle_lines(document: JsonObject) -> list[str]:
    """One line per scenario: what the oracle allowed, and each configuration's share of it."""
    lines = []
    for scenario in document["scenarios"]:
        runs = scenario["runs"]
        if not runs:
            continue
        oracle = next(iter(runs.values()))["oracle"]
        parts = ", ".join(
            f"{key} {_pct(run['share_of_oracle']['share'])}" for key, run in runs.items()
        )
        lines.append(
            f"oracle {scenario['title']}: {oracle['completable']} of {oracle['attempted']} "
            f"orders completable; share of the oracle: {parts}"
        )
    return lines


def broken_invariants(document: JsonObject) -> list[str]:
    """What must hold on any machine at any speed: nobody charged twice, no event lost."""
    problems = []
    for scenario, key, run in _runs(document):
        where = f"{scenario['title']} / {key}"
        if run["duplicates"]["extra_charges"]:
            problems.append(f"{where}: {run['duplicates']['extra_charges']} extra charges")
        if run["events"]["lost"]:
            problems.append(f"{where}: {run['events']['lost']} payment.completed events lost")
    return problems


# ---- JSON -----------------------------------------------------------------------------------


def write_json(path: Path, document: JsonObject) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")


# ---- SVG ------------------------------------------------------------------------------------

WIDTH: Final = 1000
PANEL_W: Final = 430
PANEL_H: Final = 170
ROW_H: Final = 300
BAND_H: Final = 7
BAND_GAP: Final = 3
BAND_TOP: Final = 36
"""Breaker bands start this far below a panel's frame (under its axis labels)."""
STATE_COLOURS: Final = {"open": "#d7301f", "half_open": "#fdae61", "forced_open": "#7f0000"}
PROBE_COLOURS: Final = {"succeeded": "#006d2c", "failed": "#252525"}
LEFT: Final = 60
GAP: Final = 500
TOP: Final = 90


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _fmt_tick(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1 or value == 0 else f"{value:.2g}"


class _Panel:
    def __init__(self, x: float, y: float, x_max: float, y_max: float) -> None:
        self.x, self.y, self.x_max, self.y_max = x, y, x_max, y_max

    def px(self, t: float) -> float:
        return self.x + PANEL_W * min(max(t, 0.0), self.x_max) / self.x_max

    def py(self, v: float) -> float:
        return self.y + PANEL_H - PANEL_H * min(v, self.y_max) / self.y_max


def _axes(panel: _Panel, title: str, unit: str, percent: bool) -> list[str]:
    parts = [
        f'<text x="{panel.x}" y="{panel.y - 8}" class="t">{escape(title)}</text>',
        f'<rect x="{panel.x}" y="{panel.y}" width="{PANEL_W}" height="{PANEL_H}" class="frame"/>',
    ]
    step = _nice_step(panel.y_max, 4)
    value = 0.0
    while value <= panel.y_max + 1e-9:
        y = panel.py(value)
        label = f"{value * 100:g}" if percent else _fmt_tick(value)
        parts.append(
            f'<line x1="{panel.x}" y1="{y:.1f}" x2="{panel.x + PANEL_W}" '
            f'y2="{y:.1f}" class="grid"/>'
        )
        parts.append(f'<text x="{panel.x - 6}" y="{y + 4:.1f}" class="yl">{label}</text>')
        value += step
    xstep = _nice_step(panel.x_max, 6)
    value = 0.0
    while value <= panel.x_max + 1e-9:
        x = panel.px(value)
        parts.append(
            f'<text x="{x:.1f}" y="{panel.y + PANEL_H + 14}" class="xl">{_fmt_tick(value)}</text>'
        )
        value += xstep
    parts.append(
        f'<text x="{panel.x + PANEL_W}" y="{panel.y + PANEL_H + 28}" class="ax">'
        f"seconds since start ({escape(unit)})</text>"
    )
    return parts


def _series(
    panel: _Panel, points: Sequence[tuple[float, float | None]], colour: str, dash: str
) -> str:
    paths: list[str] = []
    current: list[str] = []
    for t, v in points:
        if v is None:
            if current:
                paths.append(" ".join(current))
            current = []
            continue
        current.append(f"{panel.px(t):.1f},{panel.py(v):.1f}")
    if current:
        paths.append(" ".join(current))
    return "".join(
        f'<polyline points="{p}" fill="none" stroke="{colour}" stroke-width="1.8"'
        + (f' stroke-dasharray="{dash}"' if dash else "")
        + "/>"
        if " " in p
        else f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2" fill="{colour}"/>'
        for p in paths
    )


def render_svg(document: JsonObject) -> str:
    scenarios = document["scenarios"]
    height = TOP + ROW_H * len(scenarios) + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">',
        "<style>.t{font-size:13px;font-weight:bold}.frame{fill:none;stroke:#444}"
        ".grid{stroke:#ddd}.yl{font-size:10px;text-anchor:end}.xl{font-size:10px;"
        "text-anchor:middle}.ax{font-size:10px;text-anchor:end;fill:#555}"
        ".lg{font-size:11px}.out{fill:#999;fill-opacity:0.25}.bl{font-size:9px;"
        "text-anchor:end;fill:#333}.band{fill:#e5f5e0}</style>",
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="24" font-size="16" font-weight="bold">paytabs-guard bench chaos'
        f" ({escape(str(document['profile']))} profile, seed {document['seed']})</text>",
    ]
    configurations = {c["key"]: c["title"] for c in document["configurations"]}
    legend_x, legend_y = float(LEFT), 44.0
    items = [*configurations.items(), ("", "gateway down")]
    for key, title in items:
        width = 40 + 6.2 * len(title)
        if legend_x + width > WIDTH - 10:
            legend_x, legend_y = float(LEFT), legend_y + 16
        if key:
            colour = COLOURS.get(key, "#000")
            dash = DASHES.get(key, "")
            parts.append(
                f'<line x1="{legend_x}" y1="{legend_y}" x2="{legend_x + 24}" y2="{legend_y}" '
                f'stroke="{colour}" stroke-width="3"'
                + (f' stroke-dasharray="{dash}"' if dash else "")
                + "/>"
            )
        else:
            parts.append(
                f'<rect x="{legend_x}" y="{legend_y - 7}" width="24" height="12" class="out"/>'
            )
        parts.append(
            f'<text x="{legend_x + 30}" y="{legend_y + 4}" class="lg">{escape(title)}</text>'
        )
        legend_x += width
    parts += _band_legend(LEFT, legend_y + 12)
    for row, scenario in enumerate(scenarios):
        y = TOP + ROW_H * row + 30
        duration = float(scenario["duration"])
        latencies = [
            point["create_p95"]
            for run in scenario["runs"].values()
            for point in run["timeline"]
            if point["create_p95"] is not None
        ]
        y_max = max(latencies, default=1.0)
        y_max = _nice_step(y_max, 4) * math.ceil(y_max / _nice_step(y_max, 4)) if y_max else 1.0
        success = _Panel(LEFT, y, duration, 1.0)
        latency = _Panel(LEFT + GAP, y, duration, y_max)
        for panel in (success, latency):
            for window in scenario["outages"]:
                x1, x2 = panel.px(window["start"]), panel.px(min(window["end"], duration))
                parts.append(
                    f'<rect x="{x1:.1f}" y="{panel.y}" width="{x2 - x1:.1f}" '
                    f'height="{PANEL_H}" class="out"/>'
                )
        title = _short(str(scenario["title"]))
        parts += _axes(success, f"{title}: orders completed, by arrival (%)", "arrival", True)
        parts += _axes(latency, f"{title}: create latency p95 (s)", "request sent", False)
        for key, run in scenario["runs"].items():
            colour = COLOURS.get(key, "#000")
            timeline = run["timeline"]
            half = [(p["t"] + (timeline[1]["t"] if len(timeline) > 1 else 0) / 2) for p in timeline]
            pairs = list(zip(half, timeline, strict=True))
            dash = DASHES.get(key, "")
            parts.append(_series(success, [(h, p["success_rate"]) for h, p in pairs], colour, dash))
            parts.append(_series(latency, [(h, p["create_p95"]) for h, p in pairs], colour, dash))
        parts += _breaker_bands(scenario, (success, latency))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _short(title: str, limit: int = 34) -> str:
    """A scenario title that fits above a panel: up to its first comma, or cut."""
    if len(title) <= limit:
        return title
    head = title.split(",", 1)[0]
    return head if len(head) <= limit else title[: limit - 1] + "…"


def _band_legend(x: float, y: float) -> list[str]:
    items = [
        ("band", "", "create breaker closed"),
        ("", STATE_COLOURS["open"], "open"),
        ("", STATE_COLOURS["half_open"], "half-open"),
    ]
    parts = []
    for css, colour, label in items:
        fill = f' fill="{colour}"' if colour else ""
        klass = f' class="{css}"' if css else ""
        parts.append(f'<rect x="{x}" y="{y}" width="18" height="{BAND_H}"{klass}{fill}/>')
        parts.append(f'<text x="{x + 22}" y="{y + BAND_H}" class="lg">{label}</text>')
        x += 40 + 6 * len(label)
    for result, colour in PROBE_COLOURS.items():
        parts.append(
            f'<line x1="{x + 6}" y1="{y - 1}" x2="{x + 6}" y2="{y + BAND_H + 1}" '
            f'stroke="{colour}" stroke-width="1.5"/>'
        )
        parts.append(f'<text x="{x + 12}" y="{y + BAND_H}" class="lg">probe {result}</text>')
        x += 110
    return parts


def _breaker_bands(scenario: JsonObject, panels: Sequence[_Panel]) -> list[str]:
    """Under each panel, one band per configuration with a breaker and per instance: the create
    breaker's state over time, with a tick for every recovery probe it sent."""
    parts: list[str] = []
    row = 0
    duration = float(scenario["duration"])
    for key, run in scenario["runs"].items():
        changes = run["breaker"]["changes"].get("create", [])
        probes = [p for p in run["probes"]["events"] if p["breaker"] == "create"]
        if not changes and not probes:
            continue
        for instance in range(int(run.get("instances", 1))):
            label = key if int(run.get("instances", 1)) == 1 else f"{key} #{instance + 1}"
            mine = [c for c in changes if c.get("instance", 0) == instance]
            for panel in panels:
                y = panel.y + PANEL_H + BAND_TOP + row * (BAND_H + BAND_GAP)
                parts.append(
                    f'<rect x="{panel.x}" y="{y:.1f}" width="{PANEL_W}" height="{BAND_H}" '
                    f'class="band"/>'
                )
                parts.append(
                    f'<text x="{panel.x - 4}" y="{y + BAND_H:.1f}" class="bl">{label}</text>'
                )
                parts += _state_spans(panel, y, mine, duration)
                for probe in probes:
                    if probe.get("instance", 0) != instance:
                        continue
                    x = panel.px(float(probe["at"]))
                    colour = PROBE_COLOURS.get(str(probe["result"]), "#252525")
                    parts.append(
                        f'<line x1="{x:.1f}" y1="{y - 2:.1f}" x2="{x:.1f}" '
                        f'y2="{y + BAND_H + 2:.1f}" stroke="{colour}" stroke-width="1.5"/>'
                    )
            row += 1
    return parts


def _state_spans(
    panel: _Panel, y: float, changes: Sequence[JsonObject], duration: float
) -> list[str]:
    parts = []
    for number, change in enumerate(changes):
        colour = STATE_COLOURS.get(str(change["state"]))
        if colour is None:
            continue
        start = float(change["at"])
        end = float(changes[number + 1]["at"]) if number + 1 < len(changes) else duration
        x1, x2 = panel.px(start), panel.px(end)
        parts.append(
            f'<rect x="{x1:.1f}" y="{y:.1f}" width="{max(x2 - x1, 0.8):.1f}" '
            f'height="{BAND_H}" fill="{colour}"/>'
        )
    return parts


def write_svg(path: Path, document: JsonObject) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_svg(document), encoding="utf-8")
