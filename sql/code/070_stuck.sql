-- genretry.stuck: live rows that are due, overdue, or held by the processor (in flight, backing off,
-- waiting for a paused generator), each with the reason in words. What an admin reads first.
-- Reads only the live-row index: its cost does not grow with finished generations.
DROP VIEW IF EXISTS genretry.stuck;
CREATE VIEW genretry.stuck AS
SELECT h.id,
       h.user_id,
       h.generator,
       h.status,
       h.retry_count AS retries,
       p.max_retries,
       h.attempt,
       h.dispatch_failures,
       h.deadline_at,
       greatest(now() - h.deadline_at, interval '0') AS overdue_by,
       h.last_outcome,
       CASE
           WHEN s.state = 'open' AND s.open_until > now() THEN
               format('generator paused: %s (next probe in %s)', s.reason, genretry.human_interval(s.open_until - now()))
           WHEN s.state IN ('open', 'probing') THEN format('generator paused: %s (probing)', s.reason)
           WHEN NOT coalesce(p.enabled, true) THEN format('generator %s disabled by policy', h.generator)
           WHEN h.lease_until > now() THEN
               format('delivery of attempt %s in flight (worker %s)', h.attempt, h.leased_by)
           WHEN h.retry_phase = 'leased' THEN
               format('worker %s stopped before recording attempt %s: redelivery due', h.leased_by, h.attempt)
           WHEN h.retry_phase IN ('backoff', 'unsent') AND h.deadline_at > now() THEN
               format('waiting %s of backoff after %s', genretry.human_interval(h.deadline_at - now()), h.last_outcome)
           WHEN h.retry_phase IN ('backoff', 'unsent') THEN format('redelivery due after %s', h.last_outcome)
           WHEN h.retry_phase = 'requested' THEN 'retry requested by an admin'
           WHEN h.retry_count >= p.max_retries THEN
               format('retries exhausted (%s of %s): the next sweep fails it', h.retry_count, p.max_retries)
           WHEN h.status = 'generating' THEN
               format('no heartbeat for %s (stale after %s)',
                      genretry.human_interval(now() - greatest(h.heartbeat_at, h.status_changed_at)),
                      genretry.human_interval(p.stale_after))
           ELSE
               format('pending for %s without a start (stale after %s)',
                      genretry.human_interval(now() - greatest(h.heartbeat_at, h.status_changed_at)),
                      genretry.human_interval(p.pending_stale_after))
       END AS reason
FROM public.generation_history h
CROSS JOIN LATERAL genretry.effective_policy(h.generator) p
LEFT JOIN genretry.generator_state s ON s.generator = h.generator
WHERE h.status IN ('pending', 'generating')
  AND (h.deadline_at <= now()
       OR h.retry_phase IN ('requested', 'leased', 'backoff', 'unsent')
       OR s.state IN ('open', 'probing'));
COMMENT ON VIEW genretry.stuck IS 'admin: live generations that are due or held by the processor, with the reason';
