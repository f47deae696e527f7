"""The uvicorn factory of ``serve``: ``paytabs_guard.entrypoints.api.main:service``.

Each worker process calls it: settings from the environment, JSON logging, then the app whose
lifespan builds the container.
"""

from __future__ import annotations

from fastapi import FastAPI

from paytabs_guard.entrypoints.config_report import print_config_problems
from paytabs_guard.entrypoints.serve import secret_values
from paytabs_guard.observability import configure_logging
from paytabs_guard.settings import ConfigError, load_settings

from .app import create_service


def service() -> FastAPI:
    try:
        settings = load_settings()
    except ConfigError as error:
        print_config_problems(error.problems)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, secrets=secret_values(settings))
    return create_service(settings)
