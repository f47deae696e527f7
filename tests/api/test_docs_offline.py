"""/docs, /redoc and the simulator's /_sim/docs render in a real headless Chromium with no
request leaving 127.0.0.1 (outside names do not even resolve in that browser)."""

from __future__ import annotations

import anyio
import pytest

from paytabs_simulator.server import RunningSimulator

from .api_support import Service
from .browser_support import Visit, browser

pytestmark = pytest.mark.anyio

SWAGGER_READY = "!!document.querySelector('.swagger-ui .opblock')"
SWAGGER_READS = {
    "title": "document.querySelector('.swagger-ui .info .title')?.textContent || ''",
    "operations": "document.querySelectorAll('.swagger-ui .opblock').length",
    "lang": "document.documentElement.lang",
}
REDOC_READY = "!!document.querySelector('[data-section-id], .api-content h1')"
REDOC_READS = {
    "title": "document.querySelector('.api-content h1')?.textContent || ''",
    "operations": "document.querySelectorAll('[data-section-id^=\"operation\"]').length",
    "lang": "document.documentElement.lang",
}


def _visit_all(pages: list[tuple[str, str, dict[str, str]]]) -> list[Visit]:
    with browser() as chromium:
        return [chromium.visit(url, ready, reads) for url, ready, reads in pages]


async def test_service_docs_render_offline(service: Service) -> None:
    swagger, redoc = await anyio.to_thread.run_sync(
        _visit_all,
        [
            (f"{service.url}/docs", SWAGGER_READY, SWAGGER_READS),
            (f"{service.url}/redoc", REDOC_READY, REDOC_READS),
        ],
    )
    for visit in (swagger, redoc):
        assert visit.values["rendered"], visit
        assert visit.foreign_requests() == [], visit.foreign_requests()
        assert "paytabs-guard payments v2" in visit.values["title"]
        assert visit.values["operations"] >= 10, visit.values
    assert any(url.endswith("/docs-assets/swagger-ui-bundle.js") for url in swagger.requests)
    assert any(url.endswith("/docs-assets/redoc.offline.js") for url in redoc.requests)
    # ReDoc's bundle hard-codes its CDN logo; served with that address emptied, the page does
    # not even ask for it (the CSP would drop it, with an error in the browser's console).
    assert redoc.blocked == []
    assert swagger.blocked == []
    for visit in (swagger, redoc):
        assert visit.values["lang"] == "en"


async def test_docs_pages_cannot_be_framed_and_say_their_language(service: Service) -> None:
    for path in ("/docs", "/redoc"):
        page = await service.anonymous.get(path)
        assert page.status_code == 200
        assert '<html lang="en">' in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
    bundle = await service.anonymous.get("/docs-assets/redoc.offline.js")
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert "cdn.redoc.ly" not in bundle.text
    assert "API docs by Redocly" in bundle.text  # the rest of the bundle is intact
    # The package's own files are still served beside it.
    original = await service.anonymous.get("/docs-assets/redoc.standalone.js")
    assert original.status_code == 200
    assert len(original.content) == len(bundle.content) + len(
        "https://cdn.redoc.ly/redoc/logo-mini.svg"
    )


async def test_simulator_docs_render_offline(sim: RunningSimulator) -> None:
    (visit,) = await anyio.to_thread.run_sync(
        _visit_all, [(f"{sim.base_url}/_sim/docs", SWAGGER_READY, SWAGGER_READS)]
    )
    assert visit.values["rendered"], visit
    assert visit.foreign_requests() == [], visit.foreign_requests()
    assert "PayTabs simulator" in visit.values["title"]
    assert visit.values["operations"] >= 5


async def test_the_documented_example_bodies_work_as_they_are(service: Service) -> None:
    # Swagger UI's "Try it out" sends a body's example unless edited. Without one it made up
    # "return_url": "string" and "country": "mK", and the create failed (422).
    schemas = (await service.anonymous.get("/openapi.json")).json()["components"]["schemas"]
    for name in ("CreatePaymentIn", "RecurringChargeIn", "RefundIn", "CaptureIn"):
        assert schemas[name]["examples"], name
    [example] = schemas["CreatePaymentIn"]["examples"]
    created = await service.api.post(
        "/payments/v2/create", json=example, headers={"Idempotency-Key": "docs-example-1"}
    )
    assert created.status_code == 201, created.text
    paid = await service.create("20.00")
    await service.pay(paid)
    await service.callbacks_done()
    [refund] = schemas["RefundIn"]["examples"]
    refunded = await service.api.post(f"/payments/v2/{paid['id']}/refund", json=refund)
    assert refunded.status_code == 200, refunded.text
