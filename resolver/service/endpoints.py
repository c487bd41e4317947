"""The server's HTTP endpoints, each an ASGI app served by hypercorn on the event loop:
/metrics (Prometheus) and the control endpoint (what is loaded, for ``sinkhole diff``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from resolver.edge.http import HttpServer, Limits, route_app
from resolver.service.metrics import metrics_routes
from resolver.tools.control import Loaded, control_routes

METRICS_LIMITS = Limits(read_timeout=30.0)  # a scrape is one small response
# GET /entries streams for as long as the names take, while the client sends nothing:
# no read timeout (a client that stops reading is dropped after send_timeout).
CONTROL_LIMITS = Limits(max_requests=8, read_timeout=None)


def metrics_server(read: Callable[[], dict[str, Any]]) -> HttpServer:
    """GET /metrics: the counters ``read`` gives, read at scrape time."""
    return HttpServer("metrics", route_app(metrics_routes(read), METRICS_LIMITS), METRICS_LIMITS)


def control_server(read: Callable[[], Loaded | None]) -> HttpServer:
    """GET /policies and GET /entries of what ``read`` gives (a loopback address only:
    the configuration refuses any other)."""
    return HttpServer("control", route_app(control_routes(read), CONTROL_LIMITS), CONTROL_LIMITS)
