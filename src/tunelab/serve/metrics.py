"""What an operator watches: `/metrics` in Prometheus' text format (prometheus_client), one registry per app
so several apps in one process (tests) count apart."""
from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tunelab.serve.batching import Batcher

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServeMetrics:
    def __init__(self, batcher: Batcher, in_flight: Callable[[], int]):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("tunelab_requests", "Generation requests by model and outcome (ok, error, "
                                "rejected: queue full, timeout, cancelled: the client left)", ["model", "outcome"],
                                registry=registry)
        self.prompt_tokens = Counter("tunelab_prompt_tokens", "Prompt tokens read", ["model"], registry=registry)
        self.completion_tokens = Counter("tunelab_completion_tokens", "Tokens generated", ["model"],
                                         registry=registry)
        self.latency = Histogram("tunelab_request_latency_seconds", "From arrival to the last token", ["model"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.first_token = Histogram("tunelab_time_to_first_token_seconds", "From arrival to the first streamed "
                                     "text", ["model"], buckets=LATENCY_BUCKETS, registry=registry)
        self.batch_size = Histogram("tunelab_batch_size", "Answers decoded together, per decoding step",
                                    buckets=BATCH_BUCKETS, registry=registry)
        Gauge("tunelab_requests_in_flight", "Requests accepted and not yet answered",
              registry=registry).set_function(in_flight)
        Gauge("tunelab_queue_depth", "Requests waiting to join the decoding batch",
              registry=registry).set_function(lambda: batcher.waiting)
        Gauge("tunelab_decoding_answers", "Answers in the decoding batch now",
              registry=registry).set_function(lambda: batcher.decoding)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
