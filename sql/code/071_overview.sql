-- genretry.overview: per generator and live status: rows, due rows, the oldest overdue age, and from the
-- event log the retries delivered, failed deliveries and rows failed in the last hour, plus the circuit.
-- Finished rows are not counted (that would scan the whole table); their story is in genretry.events.
DROP VIEW IF EXISTS genretry.overview;
CREATE VIEW genretry.overview AS
WITH live AS (
    SELECT h.generator, h.status, count(*) AS rows,
           count(*) FILTER (WHERE h.deadline_at <= now()) AS due,
           -- bounded first: a deadline at -infinity must not make the view raise (issue 10, class 3)
           max(now() - greatest(h.deadline_at, now() - interval '100 years'))
               FILTER (WHERE h.deadline_at <= now()) AS oldest_overdue
    FROM public.generation_history h
    WHERE h.status IN ('pending', 'generating')
    GROUP BY h.generator, h.status
), recent AS (
    SELECT e.generator,
           count(*) FILTER (WHERE e.event IN ('delivered', 'delivery_timeout')) AS retries_1h,
           count(*) FILTER (WHERE e.event IN ('delivery_failed', 'delivery_unauthorized')) AS failed_deliveries_1h,
           -- rows failed: a rejection writes `rejected` (the delivery) and `failed` (the row): count the row once
           count(*) FILTER (WHERE e.event IN ('exhausted', 'unreachable', 'failed', 'given_up')) AS failures_1h
    FROM genretry.events e
    WHERE e.at > now() - interval '1 hour' AND e.generator IS NOT NULL
    GROUP BY e.generator
)
SELECT coalesce(l.generator, r.generator) AS generator,
       l.status,
       coalesce(l.rows, 0) AS rows,
       coalesce(l.due, 0) AS due,
       l.oldest_overdue,
       coalesce(r.retries_1h, 0) AS retries_1h,
       coalesce(r.failed_deliveries_1h, 0) AS failed_deliveries_1h,
       coalesce(r.failures_1h, 0) AS failures_1h,
       coalesce(s.state, 'closed') AS circuit
FROM live l
FULL JOIN recent r ON r.generator = l.generator
LEFT JOIN genretry.generator_state s ON s.generator = coalesce(l.generator, r.generator)
ORDER BY 1, 2;
COMMENT ON VIEW genretry.overview IS 'admin: live generations per generator and status, with the last hour of retries';
