"""Prometheus metrics of one daemon, in a registry of its own (so tests can run several daemons).

Label cardinality is bounded: a `generator` label is a configured generator name, "(other)" for any other
well-formed name and "(invalid)" for a name that is not a routing key (SPEC 3.1), so hostile rows cannot
grow the series. Counters carry no `_created` twin. Alert rules and their runbook: deploy/prometheus/,
docs/RUNBOOK.md.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from processor import __version__

disable_created_metrics()  # type: ignore[no-untyped-call]

LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 150, 400)
ROUTING_KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
OTHER, INVALID = "(other)", "(invalid)"


class _ByGenerator:
    """A labelled metric whose first label is a generator name, normalised to a bounded set."""

    def __init__(self, metric: Any, label: Callable[[str], str]) -> None:
        self._metric, self._label = metric, label
        self._children: dict[tuple[str, ...], Any] = {}  # label values are a bounded set: known, other, invalid

    def labels(self, generator: str, *rest: str) -> Any:
        key = (self._label(generator), *rest)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._metric.labels(*key)
        return child


class _Counts(Collector):
    """Counters kept by other parts as plain integers (the listener's), read at scrape time."""

    def __init__(self) -> None:
        self.sources: dict[str, tuple[str, Callable[[], int]]] = {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, (doc, read) in self.sources.items():
            yield CounterMetricFamily(name, doc, value=read())


class Metrics:
    def __init__(self, known: Iterable[str] = ()) -> None:
        self.known = frozenset(known)
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        build = Gauge("genretry_build_info", "the running processor's version (always 1)", ["version", "python"],
                      registry=r)
        build.labels(__version__, platform.python_version()).set(1)
        self.claims = Counter("genretry_claims", "rows claimed for delivery", registry=r)
        self.deliveries = _ByGenerator(Counter("genretry_deliveries", "deliveries by generator and outcome",
                                               ["generator", "outcome"], registry=r), self.generator_label)
        self.exhaustions = Counter("genretry_exhaustions", "rows failed because retries were spent", registry=r)
        self.failures = _ByGenerator(Counter("genretry_rows_failed", "rows failed by a delivery outcome",
                                             ["generator"], registry=r), self.generator_label)
        self.pauses = _ByGenerator(Counter("genretry_generator_pauses", "times a generator's circuit opened",
                                           ["generator"], registry=r), self.generator_label)
        self.database_errors = Counter("genretry_database_errors", "database errors the loop backed off from",
                                       registry=r)
        self.record_failures = Counter("genretry_record_failures",
                                       "outcomes that could not be recorded (the lease ran out first)", registry=r)
        self.events_pruned = Counter("genretry_events_pruned", "genretry.events rows deleted by retention",
                                     registry=r)
        self.retention_errors = Counter("genretry_retention_errors", "retention runs that failed", registry=r)
        self.retention_last_success = Gauge("genretry_retention_last_success_timestamp_seconds",
                                            "when retention last finished (unix time)", registry=r)
        self.due_rows = Gauge("genretry_due_rows", "live rows due now", registry=r)
        self.oldest_overdue = Gauge("genretry_oldest_overdue_seconds", "age of the oldest overdue row", registry=r)
        self.paused_generators = Gauge("genretry_paused_generators", "generators whose circuit is open",
                                       registry=r)
        self.in_flight = Gauge("genretry_in_flight", "deliveries in flight", registry=r)
        self.detection_lag = Histogram("genretry_detection_lag_seconds", "from a row's deadline to its claim",
                                       buckets=LAG_BUCKETS, registry=r)
        self.delivery_latency = _ByGenerator(Histogram("genretry_delivery_seconds", "HTTP delivery duration",
                                                       ["generator"], buckets=LATENCY_BUCKETS, registry=r),
                                             self.generator_label)
        self._counts = _Counts()
        # read from the recorder at scrape time (health.serve points them at it)
        self.outcomes_waiting = Gauge("genretry_outcomes_waiting",
                                      "outcomes not recorded yet because their row is locked", registry=r)
        self.oldest_waiting_outcome = Gauge("genretry_oldest_waiting_outcome_seconds",
                                            "how long the oldest outcome not recorded yet has waited", registry=r)
        r.register(self._counts)
        # the listener's own counters; health.serve points them at the running listener
        self.count_from("genretry_listener_reconnects", "times the LISTEN connection was re-established", lambda: 0)
        self.count_from("genretry_bad_notifications", "notification payloads that were not valid hints", lambda: 0)

    def generator_label(self, generator: object) -> str:
        """The label value for a generator name: itself when configured, else "(other)" or "(invalid)"."""
        if isinstance(generator, str) and generator in self.known:
            return generator
        if isinstance(generator, str) and ROUTING_KEY.fullmatch(generator):
            return OTHER
        return INVALID

    def count_from(self, name: str, doc: str, read: Callable[[], int]) -> None:
        """Expose an integer another part keeps (read at scrape time) as counter `name`_total."""
        self._counts.sources[name] = (doc, read)
