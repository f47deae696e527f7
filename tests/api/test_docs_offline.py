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
}
REDOC_READY = "!!document.querySelector('[data-section-id], .api-content h1')"
REDOC_READS = {
    "title": "document.querySelector('.api-content h1')?.textContent || ''",
    "operations": "document.querySelectorAll('[data-section-id^=\"operation\"]').length",
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
    assert any(url.endswith("/docs-assets/redoc.standalone.js") for url in redoc.requests)
    # ReDoc always asks its CDN for a logo; the page's CSP stops it inside the browser.
    assert all(url.startswith("https://cdn.redoc.ly/") for url in redoc.blocked), redoc.blocked
    assert swagger.blocked == []


async def test_simulator_docs_render_offline(sim: RunningSimulator) -> None:
    (visit,) = await anyio.to_thread.run_sync(
        _visit_all, [(f"{sim.base_url}/_sim/docs", SWAGGER_READY, SWAGGER_READS)]
    )
    assert visit.values["rendered"], visit
    assert visit.foreign_requests() == [], visit.foreign_requests()
    assert "PayTabs simulator" in visit.values["title"]
    assert visit.values["operations"] >= 5
