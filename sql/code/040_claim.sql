-- genretry.claim(worker, limit, lease, now): claim up to `limit` due rows for delivery. Called by the daemon.
-- One statement per call: candidates come from the live-row index in deadline order with
-- FOR UPDATE SKIP LOCKED (concurrent daemons never take the same row), then each is classified:
--   not_due   the stored deadline was early (heartbeat slack, see track_row): the deadline is corrected
--   exhausted retry_count >= max_retries: the row fails with a message and an `exhausted` event
--   deliver   lease taken: lease_id, lease_until = deadline_at = now + lease, attempt set (fencing)
-- The attempt is reused when the last delivery never reached the generator (unsent, or a lease whose
-- outcome was never recorded), so a redelivery carries the same Idempotency-Key.
-- Rows of paused or disabled generators are skipped; a paused generator whose pause is over gets one
-- probe row (the circuit goes to `probing`). Returns the rows to deliver and the rows exhausted.
-- Issue 10: a row whose lease still lives is never claimed again, whatever its deadline says (its deadline
-- is corrected to the lease end instead, so the daemon's wake-up does not spin on it); one row's values
-- (+/-infinity, far years, a huge stale_for) never make the claim raise: the arithmetic below works on
-- values bounded first. Callers other than the owner run on the server's clock with a lease of at most
-- genretry.max_lease(); the owner (tests) may pass its own.
CREATE OR REPLACE FUNCTION genretry.claim(
    p_worker text, p_limit integer DEFAULT 100, p_lease interval DEFAULT '3 minutes',
    p_now timestamptz DEFAULT now())
RETURNS TABLE (id uuid, user_id uuid, generator text, request jsonb, attempt integer, lease_id uuid,
               action text, error_message text, due_at timestamptz, retry_count integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- The statement below is the same on every call: a generic plan (still the live-row index scan) saves
-- planning it again each time, which custom plans would do.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    f record;
    g text;
    won text[] := '{}';  -- generators whose probe this call took
    probe_ids uuid[] := '{}';  -- the probe rows, one per generator in won, locked
    probe_leases uuid[] := '{}';  -- their leases before this call (NULL when none)
    quiet text;
BEGIN
    -- The lease as plain seconds first: an interval of months and hours compares with a month as 30 days but
    -- adds by the calendar ('100 years -863999 hours' is 1 hour to `>` and 524 days to `+`), so only plain
    -- seconds are capped and checked the way they are added. Bounded to +/-1e9 s (make_interval's range).
    p_lease := make_interval(secs => greatest(least(extract(epoch FROM p_lease), 1e9), -1e9)::float8);
    IF p_worker IS NULL OR p_limit IS NULL OR p_limit < 1 OR p_lease IS NULL OR p_lease <= interval '0' THEN
        RAISE EXCEPTION 'genretry.claim: worker, a positive limit and a positive lease are required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- only the owner brings a clock or a longer lease (issue 10, class 10); the daemon's call, on the
    -- server's clock within its lease limit, needs no catalog look-up, nor a call of caller_clock (whose own
    -- first test is made here)
    IF NOT coalesce(p_now BETWEEN now() AND clock_timestamp(), false) THEN
        p_now := genretry.caller_clock(p_now);
    END IF;
    IF p_lease > genretry.max_lease() AND NOT genretry.caller_is_owner() THEN
        p_lease := genretry.max_lease();
    END IF;
    quiet := set_config('genretry.quiet', 'on', true);  -- an assignment, not a PERFORM: no query of its own
    SELECT * INTO f FROM genretry.dispatch_filter(p_now);

    -- A generator whose pause is over: whoever wins this row lock sends the single probe.
    -- Its circuit row is never waited for: an admin's open transaction holding it blocks that generator
    -- for this call, not the claim (issue 10, class 5).
    FOREACH g IN ARRAY f.probe_ready LOOP
        PERFORM 1 FROM genretry.generator_state s WHERE s.generator = g FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            f.blocked := f.blocked || g;
            CONTINUE;
        END IF;
        UPDATE genretry.generator_state s
        SET state = 'probing', probe_until = p_now + p_lease, probe_lease = NULL, updated_at = p_now
        WHERE s.generator = g
          AND ((s.state = 'open' AND s.open_until <= p_now) OR (s.state = 'probing' AND s.probe_until <= p_now));
        IF FOUND THEN
            won := won || g;
        ELSE
            f.blocked := f.blocked || g;
        END IF;
    END LOOP;
    -- The probe rows are locked here, in a statement of their own that runs only when a probe was taken: the
    -- claim's statement below then carries no probe machinery in the common case (its executor start-up
    -- was about a tenth of the claim; docs/BENCHMARKS.md, 6 Dec 2026).
    IF cardinality(won) > 0 THEN
        SELECT coalesce(array_agg(pr.id), '{}'), coalesce(array_agg(pr.lease_id), '{}')
        INTO probe_ids, probe_leases
        FROM unnest(won) AS pg(name)
        CROSS JOIN LATERAL (
            SELECT h.id, h.lease_id FROM public.generation_history h
            WHERE h.status IN ('pending', 'generating') AND h.deadline_at <= p_now AND h.generator = pg.name
            ORDER BY h.deadline_at LIMIT 1
            FOR UPDATE SKIP LOCKED) pr;
    END IF;

    RETURN QUERY
    WITH normal AS (
        SELECT h.id FROM public.generation_history h
        WHERE h.status IN ('pending', 'generating') AND h.deadline_at <= p_now
          AND NOT (h.generator = ANY (f.blocked)) AND NOT (h.generator = ANY (f.probe_ready))
          AND (f.star_enabled OR h.generator = ANY (f.enabled))
        ORDER BY h.deadline_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), candidates AS (
        -- policy by join, not by a function call per row; stale_for is the row's own (kept by the triggers).
        -- b.* are the row's timestamps and stale_for bounded (by expressions, not function calls), so
        -- that no stored value makes this arithmetic overflow or subtract infinities.
        SELECT h.id, greatest(h.deadline_at, p_now - interval '100 years') AS due_at, h.retry_count AS retries,
               CASE
                   WHEN h.lease_until > p_now THEN 'not_due'  -- a lease is a lease
                   WHEN coalesce(h.retry_phase, 'delivered') = 'delivered' AND b.last_sign + b.stale > p_now
                   THEN 'not_due'
                   WHEN h.retry_count >= coalesce(gp.max_retries, sp.max_retries) THEN 'exhausted'
                   ELSE 'deliver'
               END AS action,
               CASE WHEN h.lease_until > p_now THEN least(h.lease_until, p_now + genretry.max_lease())
                    ELSE b.last_sign + b.stale END AS true_deadline,
               format('retries exhausted: %s automatic %s made; still %s, last sign of life %s ago%s',
                      h.retry_count, CASE WHEN h.retry_count = 1 THEN 'retry' ELSE 'retries' END, h.status,
                      genretry.human_interval(p_now - b.last_sign),
                      coalesce(', last delivery: ' || h.last_outcome, '')) AS exhausted_message
        FROM public.generation_history h
        CROSS JOIN LATERAL (
            SELECT CASE WHEN greatest(h.heartbeat_at, h.status_changed_at) IS NOT NULL THEN
                       greatest(least(greatest(h.heartbeat_at, h.status_changed_at), p_now + interval '100 years'),
                                p_now - interval '100 years') END AS last_sign,
                   least(greatest(h.stale_for, interval '0'), interval '100 years') AS stale) b
        LEFT JOIN genretry.policy gp ON gp.generator = h.generator
        JOIN genretry.policy sp ON sp.generator = '*'  -- always there (023_policy_guard.sql)
        WHERE h.id IN (SELECT n.id FROM normal n UNION ALL SELECT unnest(probe_ids))
    ), updated AS (
        UPDATE public.generation_history h SET
            status = CASE c.action WHEN 'exhausted' THEN 'failed' ELSE h.status END,
            error_message = CASE c.action WHEN 'exhausted' THEN c.exhausted_message ELSE h.error_message END,
            attempt = CASE
                WHEN c.action <> 'deliver' THEN h.attempt
                WHEN h.retry_phase IN ('leased', 'unsent') AND h.attempt > 0 THEN h.attempt
                ELSE least(h.attempt, 2147483646) + 1 END,  -- an attempt written at the maximum never raises
            deadline_at = CASE c.action
                WHEN 'deliver' THEN p_now + p_lease
                WHEN 'not_due' THEN c.true_deadline
                ELSE h.deadline_at END,
            retry_phase = CASE c.action WHEN 'deliver' THEN 'leased' ELSE h.retry_phase END,
            lease_id = CASE c.action WHEN 'deliver' THEN gen_random_uuid() ELSE h.lease_id END,
            lease_until = CASE c.action WHEN 'deliver' THEN p_now + p_lease ELSE h.lease_until END,
            leased_by = CASE c.action WHEN 'deliver' THEN p_worker ELSE h.leased_by END
        FROM candidates c
        WHERE h.id = c.id
          -- re-check under the row lock: a row that finished since it was read is left alone
          AND h.status IN ('pending', 'generating') AND h.deadline_at <= p_now
        RETURNING h.id, h.user_id, h.generator, h.request, h.attempt, h.lease_id, c.action,
                  h.error_message, c.due_at, h.retry_count
    ), logged AS (
        INSERT INTO genretry.events (generation_id, generator, attempt, event, detail, worker, actor, at)
        SELECT u.id, u.generator, u.attempt,
               CASE u.action WHEN 'deliver' THEN 'claimed' ELSE 'exhausted' END,
               CASE u.action
                   WHEN 'deliver' THEN jsonb_build_object('lease_id', u.lease_id, 'due_at', u.due_at,
                                                          'lease', p_lease::text, 'probe', u.id = ANY (probe_ids))
                   ELSE jsonb_build_object('retry_count', u.retry_count, 'error_message', u.error_message) END,
               p_worker, session_user, p_now
        FROM updated u WHERE u.action <> 'not_due'
    )
    SELECT u.id, u.user_id, u.generator, u.request, u.attempt, u.lease_id, u.action, u.error_message,
           u.due_at, u.retry_count
    FROM updated u WHERE u.action <> 'not_due'
    ORDER BY u.due_at;  -- delivered in deadline order

    IF cardinality(won) > 0 THEN
        -- the probe's lease, so that its outcome (and only its outcome) closes or re-opens the circuit: the lease
        -- of a probe row this call leased, known by its new lease_id (an exhausted or not-due row keeps its own,
        -- whatever it says, and the row is locked by this transaction since the statement above)
        UPDATE genretry.generator_state s SET probe_lease = h.lease_id
        FROM unnest(probe_ids, probe_leases) AS pr(id, lease_before)
        JOIN public.generation_history h ON h.id = pr.id
        WHERE s.generator = h.generator AND h.retry_phase = 'leased' AND h.lease_id IS DISTINCT FROM pr.lease_before;
        -- A generator whose probe we took but that had no due row to send stays open, ready to probe again.
        UPDATE genretry.generator_state s
        SET state = 'open', probe_until = NULL, open_until = p_now
        WHERE s.generator = ANY (won) AND s.state = 'probing' AND s.probe_lease IS NULL;
    END IF;
END
$$;
COMMENT ON FUNCTION genretry.claim(text, integer, interval, timestamptz) IS
    'daemon: claim due rows with a lease (FOR UPDATE SKIP LOCKED); fails exhausted rows';
