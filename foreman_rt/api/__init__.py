"""The HTTP service: `create_app()` for ASGI servers, `foreman-rt api` to run it."""

from foreman_rt.api.app import create_app
from foreman_rt.api.service import Service, ServiceSettings

__all__ = ["Service", "ServiceSettings", "create_app"]
