"""`GET /metrics` in Prometheus' text format, through prometheus_client (the reference implementation of
the format); each app has its own registry, so several servers in one process (tests) do not mix."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RATE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


class Metrics:
    """The server's counters, gauges and histograms (one registry per app)."""

    def __init__(self, queue_depth: Callable[[], int], active: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("kiln_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.prompt_tokens = Counter("kiln_prompt_tokens", "Prompt tokens processed", registry=r)
        self.completion_tokens = Counter("kiln_completion_tokens", "Tokens generated", registry=r)
        self.ttft = Histogram(
            "kiln_time_to_first_token_seconds", "Time to first token", buckets=TTFT_BUCKETS, registry=r
        )
        self.tokens_per_second = Histogram(
            "kiln_tokens_per_second",
            "Decode rate of each request after its first token",
            buckets=RATE_BUCKETS,
            registry=r,
        )
        queue = Gauge("kiln_queue_depth", "Requests waiting for a batch row", registry=r)
        queue.set_function(lambda: float(queue_depth()))
        running = Gauge("kiln_running_sequences", "Sequences decoding now", registry=r)
        running.set_function(lambda: float(active()))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def requests_answered(self) -> int:
        """HTTP requests answered so far, whatever their status."""
        return int(_total(self.requests))

    def tokens_generated(self) -> int:
        return int(_total(self.completion_tokens))


def _total(counter: Counter) -> float:
    """The sum of a counter's `_total` samples over all its labels."""
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))
