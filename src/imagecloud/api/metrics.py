"""Prometheus metrics: request counts by endpoint and result code, latency, vision queue, index size.

One registry per app (not the process-global default), so several apps in one process never collide.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

# Seconds; spans a cached GetImages (~1 ms) to a FindImage waiting in a full queue.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Headers a reverse proxy adds: a request carrying one was relayed for someone else, whatever the peer.
_FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def may_read_metrics(request: Request, token: str) -> Response | None:
    """None if the caller may read /metrics (which shows every tenant's traffic), else the refusal.

    With a token configured, exactly the callers that present it. Without one, only a connection from the
    loopback interface that was not relayed by a proxy (one on the same host would otherwise hand the
    metrics to everyone it serves).
    """
    if token:
        given = request.headers.get("authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return None
        return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return Response(status_code=403)
    # A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    loopback = (mapped or address).is_loopback
    if loopback and not any(name in request.headers for name in _FORWARDING_HEADERS):
        return None
    return Response(status_code=403)


class Metrics:
    def __init__(
        self,
        *,
        queue_depth: Callable[[], float],
        vision_running: Callable[[], float],
        index_size: Callable[[], float],
    ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "imagecloud_requests",
            "API requests answered, by endpoint and result code.",
            ["endpoint", "returncode"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "imagecloud_request_duration_seconds",
            "Server-side time of API requests (body parsing included), by endpoint.",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "imagecloud_requests_in_progress", "API requests being handled now.", registry=self.registry
        )
        Gauge(
            "imagecloud_vision_queue_depth",
            "Admitted image requests waiting for a vision worker.",
            registry=self.registry,
        ).set_function(queue_depth)
        Gauge(
            "imagecloud_vision_running", "Image requests running on a vision worker.", registry=self.registry
        ).set_function(vision_running)
        Gauge(
            "imagecloud_index_targets", "Targets in the search index.", registry=self.registry
        ).set_function(index_size)

    def observe(self, endpoint: str, returncode: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(returncode)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
