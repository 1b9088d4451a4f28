"""`/metrics` in Prometheus' text format, with prometheus_client and one registry per app."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from openrecipe.serve.errors import ApiError


class Metrics:
    def __init__(self, engine: Any, gate: Any) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "openrecipe_requests", "Generation requests answered", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "openrecipe_request_seconds",
            "Seconds until a generation request is answered (until the first byte, for streams)",
            ["endpoint"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )
        self.registry.register(_LiveState(engine, gate))

    async def observe(self, endpoint: str, awaitable: Awaitable[Any]) -> Any:
        started = time.perf_counter()
        status = "500"
        try:
            result = await awaitable
            status = "200"
            return result
        except ApiError as error:
            status = str(error.status)
            raise
        finally:
            self.requests.labels(endpoint, status).inc()
            self.latency.labels(endpoint).observe(time.perf_counter() - started)

    def render(self) -> str:
        return generate_latest(self.registry).decode()


class _LiveState:
    """Read at scrape time from the gate and the engine, so the numbers are never stale."""

    def __init__(self, engine: Any, gate: Any) -> None:
        self.engine, self.gate = engine, gate

    def collect(self) -> Iterator[Any]:
        yield GaugeMetricFamily(
            "openrecipe_requests_in_flight", "Requests being read, generated or streamed", value=self.gate.active
        )
        rejected = CounterMetricFamily(
            "openrecipe_rejected_requests", "Requests refused by the gate", labels=["reason"]
        )
        for reason, count in self.gate.rejected.items():
            rejected.add_metric([reason], count)
        yield rejected
        stats = self.engine.stats()
        if "generated_tokens" in stats:
            yield CounterMetricFamily(
                "openrecipe_generated_tokens", "Tokens generated", value=stats["generated_tokens"]
            )
        if "failed_requests" in stats:
            yield CounterMetricFamily(
                "openrecipe_failed_generations", "Generations that failed in the engine", value=stats["failed_requests"]
            )
        yield GaugeMetricFamily(
            "openrecipe_context_length", "Context length of the served model", value=self.engine.context_length
        )
