"""What a ``bench load`` run reports: the goals it is held to (:func:`targets`), a memory run's
trend (:func:`memory_report`) and the Markdown tables (:func:`markdown`). ``load`` measures;
this module only reads what it measured, so a report saved as JSON can be read again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

# The request-path goals (docs/benchmarks.md, "Load"): CPU per operation, throughput as a share
# of the bare endpoint's in the same run, latency added over a direct PayTabs call.
TARGET_CPU_MS: Final = {"create": 1.5, "callback": 0.7}
TARGET_RATIO: Final = {"create": 0.12, "callback": 0.25}
TARGET_ADDED_MS: Final = 3.0
TARGET_SQLITE_P99_MS: Final = 250.0
#: Growth a worker may show after the warm-up of a memory run and still count as flat.
FLAT_TOLERANCE_MIB: Final = 2.0
MIB: Final = 1024 * 1024
CPU_GROUPS: Final = ("server", "simulator", "postgres", "generator", "other")


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) points, in MiB per minute."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def memory_report(
    database: str,
    workers: int,
    pids: Sequence[int],
    samples: Sequence[tuple[float, Mapping[int, int]]],
    counts: Mapping[str, int],
    elapsed: float,
    interval_seconds: float,
) -> dict[str, object]:
    """A memory run's samples as a report: each worker's RSS, its least-squares trend after a
    warm-up (a fifth of the run, at most 60 s) and whether it stayed flat."""
    warmup = min(60.0, elapsed / 5)
    per_worker = []
    for pid in pids:
        points = [(t, rss.get(pid, 0) / MIB) for t, rss in samples]
        steady = [(t, v) for t, v in points if t >= warmup]
        slope = slope_per_minute(steady)
        growth = slope * (steady[-1][0] - steady[0][0]) / 60 if len(steady) > 1 else 0.0
        per_worker.append(
            {
                "pid": pid,
                "first_mib": round(points[0][1], 1),
                "after_warmup_mib": round(steady[0][1], 1) if steady else None,
                "last_mib": round(points[-1][1], 1),
                "max_mib": round(max(v for _, v in points), 1),
                "slope_mib_per_min": round(slope, 3),
                "trend_growth_mib": round(growth, 2),
                "flat": abs(growth) <= FLAT_TOLERANCE_MIB,
            }
        )
    total = [(t, sum(rss.values()) / MIB) for t, rss in samples]
    return {
        "database": database,
        "workers": workers,
        "seconds": round(elapsed, 1),
        "interval_seconds": interval_seconds,
        "warmup_seconds": round(warmup, 1),
        "samples": len(samples),
        "requests": dict(counts),
        "requests_per_second": round(sum(counts.values()) / elapsed, 1) if elapsed else 0.0,
        "workers_rss": per_worker,
        "total_first_mib": round(total[0][1], 1) if total else None,
        "total_last_mib": round(total[-1][1], 1) if total else None,
        "total_slope_mib_per_min": round(
            slope_per_minute([(t, v) for t, v in total if t >= warmup]), 3
        ),
        "flat": all(bool(w["flat"]) for w in per_worker),
        "series": [
            {"t": round(t, 1), "rss_mib": [round(rss.get(p, 0) / MIB, 1) for p in pids]}
            for t, rss in samples
        ],
    }


def _config(report: Mapping[str, object], database: str, workers: int) -> Mapping[str, Any] | None:
    configs = report.get("configs")
    if not isinstance(configs, list):
        return None
    for config in configs:
        if config["database"] == database and config["workers"] == workers:
            return dict(config)
    return None


def targets(report: Mapping[str, object]) -> list[dict[str, object]]:
    """The request-path goals (PostgreSQL + Redis, 1 worker; SQLite at 16 connections), each
    met or missed with the measured value."""
    found: list[dict[str, object]] = []

    def add(target: str, measured: float, unit: str, met: bool) -> None:
        found.append({"target": target, "measured": f"{measured:.2f}{unit}", "met": met})

    config = _config(report, "postgres", 1)
    if config is not None:
        costs = config.get("per_operation", {})
        for phase, goal in TARGET_CPU_MS.items():
            cpu = costs.get(phase, {}).get("cpu_ms")
            if isinstance(cpu, int | float):
                add(f"{phase}: server CPU <= {goal:g} ms, PostgreSQL, 1 worker", cpu, " ms",
                    cpu <= goal)  # fmt: skip
        for phase, goal in TARGET_RATIO.items():
            ratio = float(config["ratios"][phase])
            add(f"{phase} >= {100 * goal:g} % of bare, PostgreSQL, 1 worker", 100 * ratio, " %",
                ratio >= goal)  # fmt: skip
        added = config.get("added_latency", {}).get("added_p50_ms")
        if isinstance(added, int | float):
            add(f"service adds <= {TARGET_ADDED_MS:g} ms p50 over a direct client call "
                "(PostgreSQL, 1 w.)", added, " ms", added <= TARGET_ADDED_MS)  # fmt: skip
    sqlite = _config(report, "sqlite", 1)
    if sqlite is not None:
        p99 = sqlite["phases"].get("create", {}).get("p99_ms")
        if isinstance(p99, int | float):
            add(f"SQLite create p99 <= {TARGET_SQLITE_P99_MS:g} ms (1 worker)", p99, " ms",
                p99 <= TARGET_SQLITE_P99_MS)  # fmt: skip
    memory = report.get("memory")
    if isinstance(memory, dict):
        worst = max((abs(float(w["trend_growth_mib"])) for w in memory["workers_rss"]), default=0)
        found.append(
            {
                "target": f"memory flat over {memory['seconds']} s (trend <= "
                f"{FLAT_TOLERANCE_MIB:g} MiB per worker after warm-up)",
                "measured": f"largest trend {worst:.2f} MiB",
                "met": bool(memory["flat"]),
            }
        )
    return found


# ---- output -------------------------------------------------------------------------------------


def _cores(cpu: Mapping[str, float]) -> str:
    return " / ".join(f"{cpu.get(k, 0.0):.2f}" for k in CPU_GROUPS)


def _cost(value: object, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "—"


def _floor_lines(config: Mapping[str, Any]) -> list[str]:
    """The floor of a configuration (``load_floor``) as a table, when it was measured."""
    found = config.get("floor") or {}
    if "create_ms" not in found:
        return []
    bare = float(found["bare_request_ms"])
    label = config["database"] + (" + Redis" if config["redis"] else "")

    def row(piece: str, ms: float, allows: str = "") -> str:
        return f"| {piece} | {ms:.3f} | {ms / bare:.1f} | {allows} |"

    def allows(ratio: float, phase: str) -> str:
        return f"{100 * ratio:.1f} % (goal {100 * TARGET_RATIO[phase]:g} %)"

    # How the service sends a commit that runs alone; absent from reports made before.
    direct = (
        [
            row(
                "a statement as the service sends a commit (a pooled connection, asyncpg's "
                "fetchrow)",
                found["direct_statement_ms"],
            )
        ]
        if "direct_statement_ms" in found
        else []
    )

    return [
        "",
        f"The floor ({label}, {config['workers']} worker): CPU ms per piece, the request's in the "
        f"server during the bare phase, the others in this process, {found['samples']} back to "
        "back each.",
        "",
        "| piece | CPU ms | times the bare request | largest share of bare it allows |",
        "|---|--:|--:|--:|",
        row("the bare endpoint's request (uvicorn, FastAPI, pydantic)", bare),
        row("a PayTabs call through the service's PayTabsClient", found["paytabs_call_ms"]),
        *direct,
        row(
            "a statement through SQLAlchemy's execute (checkout, 60 values, one row)",
            found["sqlalchemy_statement_ms"],
        ),
        row("the same statement on a raw asyncpg connection", found["asyncpg_statement_ms"]),
        row(
            "create floor: request + PayTabs call + 2 statements",
            found["create_ms"],
            allows(found["create_best_ratio"], "create"),
        ),
        row(
            "callback floor: request + 2 statements",
            found["callback_ms"],
            allows(found["callback_best_ratio"], "callback"),
        ),
        *_latency_floor_lines(config, found),
    ]


def _latency_floor_lines(config: Mapping[str, Any], found: Mapping[str, Any]) -> list[str]:
    """The floor under the added latency, in wall-clock p50s, next to what was measured."""
    if "added_latency_ms" not in found:
        return []
    added = config.get("added_latency", {}).get("added_p50_ms")
    floor_ms = float(found["added_latency_ms"])
    measured = f"{added:.3f}" if isinstance(added, int | float) else "—"
    return [
        "",
        "The floor under the latency a create adds over a direct PayTabs call (wall-clock p50s, "
        f"{found['samples']} one after another each; goal {TARGET_ADDED_MS:g} ms):",
        "",
        "| piece | p50 ms |",
        "|---|--:|",
        f"| a request to the bare endpoint, one after another | "
        f"{found['bare_sequential_p50_ms']:.3f} |",
        *(
            [
                "| a durable write as the service sends a commit (insert of 60 values, "
                f"committed) | {found['direct_write_p50_ms']:.3f} |"
            ]
            if "direct_write_p50_ms" in found
            else []
        ),
        f"| the same write through SQLAlchemy's execute | {found['sqlalchemy_write_p50_ms']:.3f} |",
        f"| the same write on a raw asyncpg connection | {found['asyncpg_write_p50_ms']:.3f} |",
        f"| added-latency floor: request + 2 writes | {floor_ms:.3f} |",
        f"| the same on raw asyncpg | {found['added_latency_raw_ms']:.3f} |",
        f"| left for everything else a create does, under the goal | "
        f"{TARGET_ADDED_MS - floor_ms:.3f} |",
        f"| measured: added p50 | {measured} |",
    ]


#: The processes besides the service that a create or a callback makes work, as the run's CPU
#: groups name them (``CPU_GROUPS``), with what the budget calls them.
_SHARED_WITH: Final = (
    ("postgres", "PostgreSQL"),
    ("simulator", "the simulator (PayTabs)"),
    ("generator", "the load generator"),
)


def goal_budget(config: Mapping[str, Any], nproc: int) -> dict[str, dict[str, float]]:
    """Per ratio goal: the machine's cores that rate of operations would need.

    The rate is the goal's share of the bare endpoint's throughput in the same run. The other
    processes on the machine (PostgreSQL, the simulator, the load generator) are counted at
    the CPU per operation this run measured for them; the service at its floor
    (``load_floor``), the least it could cost. ``left_ms`` is the CPU per operation the
    machine's cores leave the service at that rate, beside its floor. When the total is above
    ``nproc``, that goal cannot be met on this machine whatever the service's own code does,
    unless the other processes' work per operation falls too. ``left_ms`` is also capped by
    the service's workers: each is one process running Python, so N workers use at most N
    cores however idle the rest of the machine is. Assumes the other processes' CPU per
    operation stays what it was at the measured rate (a higher rate batches the relay more,
    so this leans towards reaching the goal)."""
    found = config.get("floor") or {}
    phases = config.get("phases") or {}
    bare_rps = (phases.get("bare") or {}).get("throughput_rps")
    if "create_ms" not in found or not bare_rps:
        return {}
    budget: dict[str, dict[str, float]] = {}
    for phase, goal in TARGET_RATIO.items():
        measured_rps = (phases.get(phase) or {}).get("throughput_rps")
        cores = (config.get("cpu_cores") or {}).get(phase) or {}
        if not measured_rps:
            continue
        rate = goal * float(bare_rps)
        needs = {
            group: float(cores.get(group, 0.0)) / float(measured_rps) * rate
            for group, _ in _SHARED_WITH
        }
        others = sum(needs.values())
        service = float(found[f"{phase}_ms"]) / 1000 * rate
        service_cores = min(float(nproc) - others, float(config.get("workers") or nproc))
        budget[phase] = {
            "rate": rate,
            **{f"{group}_cores": value for group, value in needs.items()},
            "service_floor_cores": service,
            "total_cores": others + service,
            "left_ms": max(0.0, 1000 * service_cores / rate),
            "floor_ms": float(found[f"{phase}_ms"]),
        }
    return budget


def _budget_lines(config: Mapping[str, Any], nproc: int) -> list[str]:
    """:func:`goal_budget` as a table."""
    budget = goal_budget(config, nproc)
    if not budget:
        return []
    phases = [phase for phase in TARGET_RATIO if phase in budget]

    def row(label: str, key: str, digits: int = 2) -> str:
        return f"| {label} | " + " | ".join(f"{budget[p][key]:,.{digits}f}" for p in phases) + " |"

    return [
        "",
        f"The machine at each goal's rate ({nproc} cores, shared): the cores that many "
        "operations a second need, the other processes at the CPU per operation this run "
        "measured, the service at its floor.",
        "",
        "| at the goal's rate | " + " | ".join(phases) + " |",
        "|---|" + "--:|" * len(phases),
        "| goal | " + " | ".join(f"{100 * TARGET_RATIO[p]:g} % of bare" for p in phases) + " |",
        row("operations per second", "rate", 0),
        *(row(f"{name}, cores", f"{group}_cores") for group, name in _SHARED_WITH),
        row("the service at its floor, cores", "service_floor_cores"),
        row(f"all of them, cores (the machine has {nproc})", "total_cores"),
        row(
            "CPU left to the service per operation (by the rest, at most a core a worker), ms",
            "left_ms",
            3,
        ),
        row("the service's floor per operation, ms", "floor_ms", 3),
    ]


def markdown(report: Mapping[str, Any]) -> str:
    m = report["machine"]
    plan = report["plan"]
    lines = [
        f"Machine: nproc {m['nproc']}, {m['cpu_model']}, {m['memory']}, Linux {m['kernel']}, "
        f"{m['python']}, uvicorn on {m.get('http_stack', 'unknown')}.",
        f"Command: `{report['command']}` ({report['mode']} mode, {report['when']}).",
        f"Closed loop, {plan['concurrency']} connections, {plan['warmup_seconds']:g} s warm-up, "
        f"{plan['phase_seconds']:g} s per phase; service log level {plan['log_level']}; "
        f"MALLOC_ARENA_MAX={plan['malloc_arena_max'] or 'unset'}.",
        "",
        "| database | workers | phase | req/s | vs bare | server CPU ms/op | statements/op | "
        "round trips/op | p50 ms | p99 ms | other answers | "
        "cores: server / simulator / PostgreSQL / generator / other |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for config in report.get("configs", []):
        label = config["database"] + (" + Redis" if config["redis"] else "")
        for phase in ("bare", "create", "callback"):
            data = config["phases"][phase]
            expected = 200 if phase == "callback" else 201
            other = sum(
                n for status, n in data["statuses"].items() if int(status) != expected
            ) + int(data["connection_errors"])
            ratio = "1" if phase == "bare" else f"{100 * config['ratios'][phase]:.1f} %"
            costs = config.get("per_operation", {}).get(phase, {})
            lines.append(
                f"| {label} | {config['workers']} | {phase} | {data['throughput_rps']:,.0f} | "
                f"{ratio} | {_cost(costs.get('cpu_ms'), 2)} | {_cost(costs.get('statements'), 1)}"
                f" | {_cost(costs.get('round_trips'), 1)} | {data['p50_ms']:.2f} | "
                f"{data['p99_ms']:.2f} | {other} | {_cores(config['cpu_cores'][phase])} |"
            )
    lines += [
        "",
        "| database | workers | create via service p50 / p99 ms | PayTabsClient direct p50 / "
        "p99 ms | added p50 ms | CPU ms per create: server / PostgreSQL | statements / round "
        "trips per create (relay included) |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for config in report.get("configs", []):
        lat = config["added_latency"]
        label = config["database"] + (" + Redis" if config["redis"] else "")
        lines.append(
            f"| {label} | {config['workers']} | {lat['service_p50_ms']:.2f} / "
            f"{lat['service_p99_ms']:.2f} | {lat['direct_p50_ms']:.2f} / "
            f"{lat['direct_p99_ms']:.2f} | {lat['added_p50_ms']:.2f} | "
            f"{_cost(lat.get('server_cpu_ms'), 2)} / {_cost(lat.get('postgres_cpu_ms'), 2)} | "
            f"{_cost(lat.get('statements'), 1)} / {_cost(lat.get('round_trips'), 1)} |"
        )
    for config in report.get("configs", []):
        lines += _floor_lines(config)
        lines += _budget_lines(config, int(report["machine"]["nproc"]))
    memory = report.get("memory")
    if memory:
        lines += [
            "",
            f"Memory: {memory['database']}, {memory['workers']} workers, {memory['seconds']} s, "
            f"{memory['requests_per_second']} req/s, RSS every {memory['interval_seconds']:g} s "
            f"({memory['samples']} samples), trend after a {memory['warmup_seconds']:g} s "
            "warm-up.",
            "",
            "| worker | first MiB | after warm-up MiB | last MiB | max MiB | slope MiB/min | "
            "trend MiB | flat |",
            "|---|--:|--:|--:|--:|--:|--:|---|",
        ]
        for n, w in enumerate(memory["workers_rss"], 1):
            lines.append(
                f"| {n} | {w['first_mib']} | {w['after_warmup_mib']} | {w['last_mib']} | "
                f"{w['max_mib']} | {w['slope_mib_per_min']:+.3f} | {w['trend_growth_mib']:+.2f} "
                f"| {'yes' if w['flat'] else 'no'} |"
            )
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for target in report.get("targets", []):
        lines.append(
            f"| {target['target']} | {target['measured']} | {'yes' if target['met'] else 'no'} |"
        )
    if report.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(report["skipped"])]
    return "\n".join(lines)
