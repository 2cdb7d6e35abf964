-- genretry.stuck: live rows that are due, overdue, or held by the processor (in flight, backing off,
-- waiting for a paused generator), each with the reason in words. What an admin reads first.
-- Reads only the live-row index: its cost does not grow with finished generations.
-- Also rows that would otherwise be lost (issue 10, class 3): a live row without a deadline, or with one
-- beyond what any rule sets (+infinity, a far year), and a row whose lease outlives the longest lease.
-- Every timestamp is bounded (t.*) before arithmetic, so no stored value makes the view raise.
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
       t.deadline AS deadline_at,  -- bounded (the reason shows a value out of range as it is)
       greatest(now() - t.deadline, interval '0') AS overdue_by,
       h.last_outcome,
       CASE
           WHEN s.state = 'open' AND s.open_until > now() THEN
               format('generator paused: %s (next probe in %s)', s.reason,
                      genretry.human_interval(least(s.open_until, now() + interval '100 years') - now()))
           WHEN s.state IN ('open', 'probing') THEN format('generator paused: %s (probing)', s.reason)
           WHEN NOT coalesce(p.enabled, true) THEN format('generator %s disabled by policy', h.generator)
           WHEN h.deadline_at IS NULL THEN
               'no deadline: it would never become due (genretry.retry_now makes it due)'
           WHEN t.out_of_range THEN
               format('deadline %s is out of range: it would never become due (genretry.retry_now makes it due)',
                      h.deadline_at)
           WHEN h.lease_until > now() THEN
               format('delivery of attempt %s in flight (worker %s)', h.attempt, h.leased_by)
           WHEN h.retry_phase = 'leased' THEN
               format('worker %s stopped before recording attempt %s: redelivery due', h.leased_by, h.attempt)
           WHEN h.retry_phase IN ('backoff', 'unsent') AND h.deadline_at > now() THEN
               format('waiting %s of backoff after %s', genretry.human_interval(t.deadline - now()), h.last_outcome)
           WHEN h.retry_phase IN ('backoff', 'unsent') THEN format('redelivery due after %s', h.last_outcome)
           WHEN h.retry_phase = 'requested' THEN 'retry requested by an admin'
           WHEN h.retry_count >= p.max_retries THEN
               format('retries exhausted (%s of %s): the next sweep fails it', h.retry_count, p.max_retries)
           WHEN h.status = 'generating' THEN
               format('no heartbeat for %s (stale after %s)',
                      genretry.human_interval(now() - t.last_sign), genretry.human_interval(p.stale_after))
           ELSE
               format('pending for %s without a start (stale after %s)',
                      genretry.human_interval(now() - t.last_sign), genretry.human_interval(p.pending_stale_after))
       END AS reason
FROM public.generation_history h
CROSS JOIN LATERAL (
    SELECT CASE WHEN h.deadline_at IS NOT NULL THEN
               greatest(least(h.deadline_at, now() + interval '100 years'), now() - interval '100 years') END
               AS deadline,
           CASE WHEN greatest(h.heartbeat_at, h.status_changed_at) IS NOT NULL THEN
               greatest(least(greatest(h.heartbeat_at, h.status_changed_at), now() + interval '100 years'),
                        now() - interval '100 years') END AS last_sign,
           -- beyond the row trigger's window (now + stale_for + 1 hour), with a day's margin
           h.deadline_at > now() + least(greatest(h.stale_for, interval '0'), interval '1 year') + interval '1 day'
               AS out_of_range) t
CROSS JOIN LATERAL genretry.effective_policy(h.generator) p
LEFT JOIN genretry.generator_state s ON s.generator = h.generator
WHERE h.status IN ('pending', 'generating')
  AND (h.deadline_at <= now()
       OR h.deadline_at IS NULL OR t.out_of_range
       OR h.lease_until > now() + interval '1 day'
       OR h.retry_phase IN ('requested', 'leased', 'backoff', 'unsent')
       OR s.state IN ('open', 'probing'));
COMMENT ON VIEW genretry.stuck IS 'admin: live generations that are due or held by the processor, with the reason';
