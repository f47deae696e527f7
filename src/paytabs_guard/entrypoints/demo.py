"""``paytabs-guard demo``: the service and the simulator on embedded defaults, and a short story.

Two payments succeed, one is declined, one is partly refunded; then the gateway goes down, the
create breaker opens and answers in milliseconds, a merchant's create waits with 'Prefer: wait',
the gateway comes back, a recovery probe notices at once and the held create goes through;
finally the events that went out. Everything runs on loopback (SQLite file, in-process
simulator and event subscriber). Afterwards the service keeps running and the demo prints where
to look, until Ctrl-C (``--no-wait`` ends it instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from paytabs_guard import tracing
from paytabs_guard.adapters.events import CloudEvent
from paytabs_guard.bootstrap import Container, build_container
from paytabs_guard.entrypoints.api.app import create_app
from paytabs_guard.entrypoints.loopback import serve_app
from paytabs_guard.entrypoints.serve import create_curl, free_port, secret_values
from paytabs_guard.observability import configure_logging
from paytabs_guard.settings import Settings
from paytabs_simulator.config import DEFAULT_PROFILE_ID, DEFAULT_SERVER_KEY, SimulatorConfig
from paytabs_simulator.server import run_simulator

SUCCESS_CARD = "4111111111111111"
DECLINED_CARD = "4000000000000010"
_EVENTS_SHOWN = 8
RESET_TIMEOUT_MS = 30000  # the seed's: recovery comes from the probes, not from this timer


@dataclass
class View:
    """What the live view shows: the story so far, the create breaker, the events."""

    steps: list[tuple[str, str]] = field(default_factory=list)
    breaker: str = "closed"
    events: list[CloudEvent] = field(default_factory=list)

    def step(self, title: str, detail: str = "") -> None:
        self.steps.append((title, detail))

    def render(self) -> Group:
        story = Table.grid(padding=(0, 2))
        story.add_column(style="bold")
        story.add_column()
        for title, detail in self.steps:
            story.add_row(title, detail)
        colour = {"closed": "green", "open": "red", "half_open": "yellow"}.get(self.breaker, "")
        shown = self.events[-_EVENTS_SHOWN:]
        events = Table("event", "payment", box=None, show_edge=False)
        for event in shown:
            events.add_row(event.type, event.subject or "")
        by_type = Counter(event.type for event in self.events)
        summary = ", ".join(f"{name} {count}" for name, count in sorted(by_type.items()))
        title = f"events delivered to an in-process subscriber: {len(self.events)}"
        if len(shown) < len(self.events):
            title += f" (the last {len(shown)} below)"
        return Group(
            Panel(story, title="paytabs-guard demo"),
            Panel(f"create breaker: [{colour}]{self.breaker}[/]", title="circuit breaker"),
            Panel(Group(events, f"by type: {summary}" if summary else ""), title=title),
        )


def demo_settings(settings: Settings, *, service_url: str, simulator_url: str) -> Settings:
    """The user's settings, pointed at the built-in simulator and tuned to show recovery fast."""
    return settings.model_copy(
        update={
            "paytabs_profile_id": DEFAULT_PROFILE_ID,
            "paytabs_server_key": SecretStr(DEFAULT_SERVER_KEY),
            "paytabs_base_url": simulator_url,
            "paytabs_webhook_secret": (),
            "public_base_url": service_url,
            "api_keys": settings.api_keys or (SecretStr(f"demo-{secrets.token_hex(12)}"),),
            "admin_api_keys": settings.admin_api_keys
            or (SecretStr(f"admin-{secrets.token_hex(12)}"),),
            "paytabs_timeout": 2000,
            "paytabs_retry_attempts": 1,
            "paytabs_retry_delay": 100,
            "circuit_breaker_reset_timeout": RESET_TIMEOUT_MS,
            "circuit_breaker_volume_threshold": 3,
        }
    )


class Story:
    def __init__(self, api: httpx.AsyncClient, sim: httpx.AsyncClient, view: View) -> None:
        self.api = api
        self.sim = sim
        self.view = view
        self.refunded: str | None = None  # the payment to open in the console afterwards

    async def create(self, amount: str, currency: str, description: str) -> httpx.Response:
        return await self.api.post(
            "/payments/v2/create",
            json={"amount": amount, "currency": currency, "description": description},
            headers={"Idempotency-Key": secrets.token_hex(16)},
        )

    async def pay(self, payment: dict[str, Any], card: str) -> dict[str, Any]:
        page_id = str(payment["redirect_url"]).rsplit("/", 1)[-1]
        paid = await self.sim.post(
            f"/_sim/pages/{page_id}/pay", json={"card_number": card, "cvv": "123"}
        )
        paid.raise_for_status()
        return await self.settled(payment["id"])

    async def settled(self, payment_id: str) -> dict[str, Any]:
        """Wait (10 s at most) for the signed callback to decide the payment."""
        deadline = time.monotonic() + 10.0
        while True:
            payment: dict[str, Any] = (await self.api.get(f"/payments/v2/{payment_id}")).json()
            if payment["final"] or time.monotonic() > deadline:
                return payment
            await asyncio.sleep(0.05)

    async def breaker_state(self) -> str:
        stats = (await self.api.get("/payments/v2/circuit-breaker/stats")).json()
        state: str = stats["breakers"]["create"]["state"]
        self.view.breaker = state
        return state

    async def run(self) -> None:
        view = self.view
        kept = []
        for amount, currency, what in (
            ("150.000", "KWD", "annual plan"),
            ("49.00", "SAR", "ebook"),
        ):
            created = (await self.create(amount, currency, what)).json()
            paid = await self.pay(created, SUCCESS_CARD)
            kept.append(paid)
            view.step("payment succeeds", f"{amount} {currency} {what}: {paid['state']}")
        declined = await self.pay((await self.create("20.00", "AED", "gift")).json(), DECLINED_CARD)
        view.step("payment declined", f"20.00 AED gift: {declined['state']}")
        refund = await self.api.post(
            f"/payments/v2/{kept[0]['id']}/refund",
            json={"amount": "50.000"},
            headers={"Idempotency-Key": secrets.token_hex(16)},
        )
        view.step("partial refund", f"50.000 of 150.000 KWD: {refund.json()['state']}")
        self.refunded = kept[0]["id"]

        (await self.sim.put("/_sim/faults", json={"down": True})).raise_for_status()
        view.step("gateway down", "the simulator answers 503 to everything")
        failures = 0
        while await self.breaker_state() != "open" and failures < 20:
            await self.create("10.00", "SAR", "while down")
            failures += 1
        view.step("breaker opens", f"after {failures} failed creates")
        started = time.perf_counter()
        fast = await self.create("10.00", "SAR", "fail fast")
        took = (time.perf_counter() - started) * 1000
        view.step(
            "fails fast",
            f"HTTP {fast.status_code}, Retry-After {fast.headers.get('retry-after')} s, "
            f"{took:.1f} ms, nothing sent to PayTabs",
        )

        # A merchant that would rather wait than retry: held while the breaker is open.
        held = asyncio.create_task(
            self.api.post(
                "/payments/v2/create",
                json={"amount": "10.00", "currency": "SAR", "description": "held"},
                headers={"Idempotency-Key": secrets.token_hex(16), "Prefer": "wait=10"},
            )
        )
        await asyncio.sleep(0.3)
        (await self.sim.put("/_sim/faults", json={})).raise_for_status()
        recovered_at = time.perf_counter()
        view.step("gateway recovers", "no timer to wait out: the breaker probes PayTabs")
        answer = await held
        waited = (time.perf_counter() - recovered_at) * 1000
        probes = await self.probes()
        view.step(
            "probe answers",
            f"probe answered ({probes.get('sent', 0)} sent while open); the held create went "
            f"through {waited:.0f} ms after the recovery: HTTP {answer.status_code}, "
            f"Preference-Applied {answer.headers.get('preference-applied')}",
        )
        trials = 1
        while await self.breaker_state() != "closed" and trials < 6:
            await self.create("10.00", "SAR", "trial")
            trials += 1
        view.step("breaker closes", f"{trials} real trial calls succeeded: {self.view.breaker}")

    async def probes(self) -> dict[str, Any]:
        stats = (await self.api.get("/payments/v2/circuit-breaker/stats")).json()
        probes: dict[str, Any] = stats["breakers"]["create"].get("probes") or {}
        return probes


@contextlib.asynccontextmanager
async def running_service(
    settings: Settings, port: int
) -> AsyncIterator[tuple[Container, str, str]]:
    """Simulator + container + service on loopback; yields (container, service, simulator)."""
    service_url = f"http://127.0.0.1:{port}"
    async with run_simulator(SimulatorConfig(callback_retry_delays=(0.2, 0.5, 1, 2, 4))) as sim:
        tuned = demo_settings(settings, service_url=service_url, simulator_url=sim.base_url)
        tracing.configure()  # the demo's story as traces, when OTEL_* ask for them
        container = await build_container(tuned)
        try:
            app = create_app(container)
            async with serve_app(app, port=port, lifespan="on"):
                yield container, service_url, sim.base_url
        finally:
            await container.aclose()
            tracing.shutdown()


async def demo(settings: Settings, *, port: int, wait: bool, console: Console) -> None:
    view = View()
    async with running_service(settings, port) as (container, service_url, simulator_url):

        async def seen(event: CloudEvent) -> None:
            view.events.append(event)

        container.events.on("*", seen, name="demo-live-view")
        key = container.settings.admin_api_keys[0].get_secret_value()
        async with (
            httpx.AsyncClient(
                base_url=service_url, headers={"Authorization": f"Bearer {key}"}, timeout=15
            ) as api,
            httpx.AsyncClient(base_url=simulator_url) as sim,
        ):
            with Live(view.render(), console=console, refresh_per_second=8) as live:
                story = Story(api, sim, view)
                task = asyncio.create_task(story.run())
                while not task.done():
                    live.update(view.render())
                    await asyncio.sleep(0.1)
                await task
                await asyncio.sleep(1.5)  # let the relay deliver the last events
                live.update(view.render())
        console.line()  # Live leaves the cursor after its last panel
        if not wait:
            console.print(
                Panel(
                    "The service stopped with the story (--no-wait). To try it yourself:\n"
                    "  paytabs-guard demo                 the story, then it keeps serving\n"
                    "  paytabs-guard serve --simulator    the service on its own",
                    title="the demo has ended",
                )
            )
            return
        console.print(
            where_to_look(service_url, simulator_url, settings, container.settings,
                          payment_id=story.refunded)
        )  # fmt: skip
        console.print("Ctrl-C to stop.")
        await asyncio.Event().wait()


def where_to_look(
    service_url: str,
    simulator_url: str,
    configured: Settings,
    running: Settings,
    *,
    payment_id: str | None = None,
) -> Panel:
    """URLs, keys and a curl for the running demo. A key is shown only when the demo generated
    it: keys from API_KEYS / ADMIN_API_KEYS are the operator's secrets (``configured``).
    ``payment_id`` is a payment of the story worth opening in the console."""
    merchant = running.api_keys[0].get_secret_value()
    shown_key = "<a key from API_KEYS>" if configured.api_keys else merchant
    lines = [
        f"console    {service_url}/console  (sign in with the admin key)",
        *(
            # Unindented, so the URL fits 80 columns in one piece (copied, not retyped).
            [
                "the story's refunded payment, and the outage on the breakers page:",
                f"{service_url}/console/payments/{payment_id}",
            ]
            if payment_id
            else []
        ),
        f"API docs   {service_url}/docs",
        f"health     {service_url}/payments/v2/health",
        f"           {service_url}/health/paytabs",
        f"metrics    {service_url}/metrics",
        f"simulator  {simulator_url}/_sim/docs",
    ]
    if configured.api_keys:
        lines.append("API key    one of API_KEYS (yours, not shown)")
    else:
        lines += [f"API key    {merchant}", "           (generated; set API_KEYS to choose yours)"]
    if configured.admin_api_keys:
        lines.append("admin key  one of ADMIN_API_KEYS (yours, not shown)")
    else:
        admin = running.admin_api_keys[0].get_secret_value()
        lines += [
            f"admin key  {admin}",
            "           (generated; the console, breaker control, ADMIN_API_KEYS)",
        ]
    lines += [
        "",
        "Create a payment and pay it in a browser (card 4111 1111 1111 1111):",
        *create_curl(service_url, shown_key),
        "then open its redirect_url",
    ]
    return Panel("\n".join(lines), title="the service keeps running")


def _port(preferred: int) -> int:
    """``preferred`` when it is free, else any free port (a second demo must not fail)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def run_demo(settings: Settings, *, port: int = 8000, wait: bool = True) -> int:
    """Run the story (and keep serving unless ``wait`` is False)."""
    console = Console()
    # Log lines as `serve` writes them (JSON, redacted), warnings and errors only, above the
    # live view: without a handler, Python printed the breaker the story opens as a raw dict
    # repr that no secret filter had seen.
    level = settings.log_level if settings.log_level in ("warning", "error") else "warning"
    configure_logging(level, secrets=secret_values(settings))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(demo(settings, port=_port(port), wait=wait, console=console))
    return 0
