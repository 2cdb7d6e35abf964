"""Prometheus metrics of one daemon, in a registry of its own (so tests can run several daemons)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 150, 400)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.claims = Counter("genretry_claims", "rows claimed for delivery", registry=r)
        self.deliveries = Counter("genretry_deliveries", "deliveries by outcome", ["generator", "outcome"], registry=r)
        self.exhaustions = Counter("genretry_exhaustions", "rows failed because retries were spent", registry=r)
        self.failures = Counter("genretry_rows_failed", "rows failed by a delivery outcome", ["generator"], registry=r)
        self.pauses = Counter("genretry_generator_pauses", "times a generator's circuit opened", ["generator"],
                              registry=r)
        self.due_rows = Gauge("genretry_due_rows", "live rows due now", registry=r)
        self.oldest_overdue = Gauge("genretry_oldest_overdue_seconds", "age of the oldest overdue row", registry=r)
        self.paused_generators = Gauge("genretry_paused_generators", "generators whose circuit is open",
                                       registry=r)
        self.in_flight = Gauge("genretry_in_flight", "deliveries in flight", registry=r)
        self.detection_lag = Histogram("genretry_detection_lag_seconds", "from a row's deadline to its claim",
                                       buckets=LAG_BUCKETS, registry=r)
        self.delivery_latency = Histogram("genretry_delivery_seconds", "HTTP delivery duration",
                                          buckets=LATENCY_BUCKETS, registry=r)
