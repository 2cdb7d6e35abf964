"""What the daemon says and counts about the database's verdict on one recorded outcome: a failed row, a
generator paused (its circuit opened) or resumed. Names from rows are hostile: a metric label or a log
field gets the name itself only when it is a routing key, else one fixed label (SPEC 3.1)."""

from __future__ import annotations

from typing import Any

from processor import delivery, routing
from processor.contracts import ClaimedRow, Verdict
from processor.metrics import INVALID, Metrics


def shown(generator: str) -> str:
    """A row's generator name for a log line: itself when a routing key, else escaped and cut (SPEC 3.1)."""
    return generator if routing.is_name(generator) else routing.show(generator)


def report(verdict: Verdict, row: ClaimedRow, outcome: delivery.Outcome, *, metrics: Metrics, log: Any,
           authority: str) -> None:
    # a metric label and a log field: a row's hostile name (megabytes, escapes) becomes one fixed label
    generator = row.generator if routing.is_name(row.generator) else INVALID
    if verdict.failed_with:
        metrics.failures.labels(generator).inc()
        log.warning("generation_failed", generation_id=str(row.id), generator=generator,
                    error_message=verdict.failed_with)
    if verdict.circuit == "opened":
        metrics.pauses.labels(generator).inc()
        if outcome.kind == delivery.UNAUTHORIZED:
            # exactly the seed's bug: the generator does not accept our credentials
            log.error("generator_paused", generator=generator, status=outcome.http_status, authority=authority,
                      hint="the generator refused our credentials: check PROCESSOR_AUTH_MODE and the "
                           "generator's keys (docs/generator-authority.md)", message=outcome.message)
        else:
            log.warning("generator_paused", generator=generator, reason=outcome.label)
    elif verdict.circuit == "closed":
        log.info("generator_resumed", generator=generator)
