"""Prometheus metrics: one registry per app, request counters and latency per route, and a small helper so
capabilities declare their own counters once (`metric(app, Counter, name, doc, labels)`).

A replica is one process (kagiya.serving), so one in-process registry holds all of its counters.
"""

from __future__ import annotations

from typing import Any, TypeVar

from flask import Flask
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

M = TypeVar("M", Counter, Gauge, Histogram)
EXTENSION = "kagiya.metrics"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._made: dict[str, Any] = {}
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.requests = self.get(
            Counter, "kagiya_http_requests_total", "HTTP requests by route, method and status.",
            ("route", "method", "status"),
        )
        self.latency = self.get(
            Histogram, "kagiya_http_request_duration_seconds", "HTTP request latency by route and method.",
            ("route", "method"),
        )

    def get(self, kind: type[M], name: str, doc: str, labels: tuple[str, ...] = ()) -> M:
        """The metric called `name`, made on first use (so two blueprints may share one)."""
        if name not in self._made:
            kwargs: dict[str, Any] = {"registry": self.registry}
            if kind is Histogram:
                kwargs["buckets"] = LATENCY_BUCKETS
            self._made[name] = kind(name, doc, labels, **kwargs)
        return self._made[name]

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        # labels() re-validates and hashes its arguments on every call; the hot path keeps the children instead.
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(route, method, str(status)),
                                               self.latency.labels(route, method))
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def metrics_of(app: Any) -> Metrics:
    return app.extensions[EXTENSION]


def metric(app: Any, kind: type[M], name: str, doc: str, labels: tuple[str, ...] = ()) -> M:
    return metrics_of(app).get(kind, name, doc, labels)


def init_app(app: Flask) -> None:
    """Install the per-app registry. Request timing is recorded by web.py's request hooks via `observe()`."""
    app.extensions[EXTENSION] = Metrics()
