-- genretry.record_deliveries(outcomes, worker, now): record many delivery outcomes in one transaction.
-- Called by the daemon, which gathers outcomes for a few milliseconds: one commit (one WAL flush) and one
-- round trip for a batch instead of one per delivery. outcomes: a JSON array of
--   {"id", "lease_id", "outcome", "http_status", "detail", "retry_after_s"}
-- Returns one row per element with record_delivery's columns and the element's id (not in the elements'
-- order: the common case comes first).
-- The common case, an `accepted` outcome of a live row still leased by the element, whose generator's
-- circuit has nothing to change (closed without failures, or no state row) and has no other outcome in the
-- batch, is recorded for the whole batch in one statement: what record_delivery does for it, set-based
-- (issue 13: one call per element cost about 145 us of server CPU, this about 50). tests/db/
-- test_record_fast_path.py and tests/adversary/test_record_fast_path_*.py hold both to the same results.
-- Every other element, any id that appears twice and any field not in the shape the daemon sends, is
-- applied by record_delivery in the batch's order, so the rules live there.
-- A row locked by another transaction (an admin's open transaction, say) is not waited for: its element
-- returns result 'locked' and nothing else, and the daemon records it again later (issue 10, class 5).
-- The others in the batch are recorded at once.
CREATE OR REPLACE FUNCTION genretry.record_deliveries(
    p_outcomes jsonb, p_worker text DEFAULT NULL, p_now timestamptz DEFAULT now())
RETURNS TABLE (id uuid, result text, status text, deadline_at timestamptz, retry_count integer,
               dispatch_failures integer, failed_with text, circuit text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    o jsonb;
    rid uuid;
    f record;
    fast uuid[] := '{}';
    v_now timestamptz;
BEGIN
    IF jsonb_typeof(p_outcomes) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'record_deliveries: outcomes must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_now := genretry.caller_clock(p_now);  -- as record_delivery: the daemon's role records on the server's clock
    PERFORM set_config('genretry.quiet', 'on', true);

    -- the common case, set-based (the header above); skipped rows (locked, finished, stale) go below
    FOR f IN
        WITH elements AS (
            SELECT x.e, (x.e ->> 'id')::uuid AS gid, count(*) OVER (PARTITION BY (x.e ->> 'id')::uuid) AS copies
            FROM pg_catalog.jsonb_array_elements(p_outcomes) AS x(e)
        ), accepted AS (
            -- elements the common case can take: accepted, their id once in the batch, every field in the shape
            -- the daemon sends (anything else goes one by one, where it is cast, or refused, as before; the
            -- casts here are guarded, so an odd field of a locked row still comes back `locked`)
            SELECT el.gid, CASE WHEN el.e ->> 'lease_id' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                                THEN (el.e ->> 'lease_id')::uuid END AS lease,
                   coalesce(el.e -> 'detail', '{}') AS detail,
                   CASE WHEN el.e ->> 'http_status' ~ '^[0-9]{1,9}$' THEN (el.e ->> 'http_status')::integer END AS http,
                   CASE WHEN el.e ->> 'retry_after_s' ~ '^[0-9]{1,9}(\.[0-9]{1,9})?$' THEN extract(epoch FROM
                       pg_catalog.make_interval(secs => (el.e ->> 'retry_after_s')::float8)) END AS after_s
            FROM elements el
            WHERE el.copies = 1 AND el.e ->> 'outcome' = 'accepted'
              AND el.e ->> 'lease_id' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
              AND (el.e ->> 'http_status' IS NULL OR el.e ->> 'http_status' ~ '^[0-9]{1,9}$')
              AND (el.e ->> 'retry_after_s' IS NULL OR el.e ->> 'retry_after_s' ~ '^[0-9]{1,9}(\.[0-9]{1,9})?$')
              AND jsonb_typeof(coalesce(el.e -> 'detail', '{}')) = 'object'
        ), mixed AS (
            -- generators with another outcome in this batch: the order of their outcomes drives their circuit
            -- (an accepted after failures resets the count), so all their elements go one by one, in order
            SELECT g.generator FROM elements el JOIN public.generation_history g ON g.id = el.gid
            WHERE el.e ->> 'outcome' IS DISTINCT FROM 'accepted'
        ), mine AS (
            SELECT g.id AS gid, a.detail, a.http, a.after_s
            FROM public.generation_history g JOIN accepted a ON a.gid = g.id
            WHERE g.lease_id = a.lease AND g.status IN ('pending', 'generating')
              AND NOT EXISTS (SELECT 1 FROM mixed x WHERE x.generator = g.generator)
              AND NOT EXISTS (SELECT 1 FROM genretry.generator_state s WHERE s.generator = g.generator
                              AND (s.consecutive_failures > 0 OR s.state <> 'closed'))
            FOR UPDATE OF g SKIP LOCKED
        ), updated AS (
            UPDATE public.generation_history g SET
                retry_count = least(g.retry_count, 2147483646) + 1,
                dispatch_failures = 0,
                retry_phase = 'delivered',
                deadline_at = v_now + (SELECT p.stale_after FROM genretry.policy p
                                       WHERE p.generator = g.generator OR p.generator = '*'
                                       ORDER BY p.generator = '*' LIMIT 1),
                lease_id = NULL,
                lease_until = NULL,
                last_outcome = coalesce(m.detail ->> 'label', m.http::text, 'accepted')
            FROM mine m
            WHERE g.id = m.gid
            RETURNING g.id AS gid, g.generator, g.attempt, g.status AS st, g.deadline_at AS due, g.retry_count AS retries,
                      g.dispatch_failures AS failures, m.detail, m.http, m.after_s
        ), logged AS (
            INSERT INTO genretry.events (generation_id, generator, attempt, event, detail, worker, actor, at)
            SELECT u.gid, u.generator, u.attempt, 'delivered',
                   u.detail || jsonb_build_object(
                       'outcome', 'accepted', 'http_status', u.http, 'counted', true,
                       'retry_count', u.retries, 'dispatch_failures', u.failures,
                       'retry_after_s', u.after_s, 'next_due_at', u.due),
                   p_worker, session_user, v_now
            FROM updated u
        )
        SELECT u.gid, u.st, u.due, u.retries, u.failures FROM updated u
    LOOP
        fast := fast || f.gid;
        id := f.gid; result := 'recorded'; status := f.st; deadline_at := f.due; retry_count := f.retries;
        dispatch_failures := f.failures; failed_with := NULL; circuit := NULL;
        RETURN NEXT;
    END LOOP;

    FOR o IN SELECT value FROM pg_catalog.jsonb_array_elements(p_outcomes) LOOP
        rid := (o ->> 'id')::uuid;
        IF rid = ANY (fast) THEN
            CONTINUE;  -- recorded above (its id appears once in the batch)
        END IF;
        PERFORM 1 FROM public.generation_history g WHERE g.id = rid FOR UPDATE SKIP LOCKED;
        IF NOT FOUND AND EXISTS (SELECT 1 FROM public.generation_history g WHERE g.id = rid) THEN
            RETURN QUERY SELECT rid, 'locked'::text, NULL::text, NULL::timestamptz, NULL::integer,
                                NULL::integer, NULL::text, NULL::text;
            CONTINUE;
        END IF;
        RETURN QUERY
        SELECT rid, r.* FROM genretry.record_delivery(
            rid, (o ->> 'lease_id')::uuid, o ->> 'outcome', (o ->> 'http_status')::integer,
            coalesce(o -> 'detail', '{}'), pg_catalog.make_interval(secs => (o ->> 'retry_after_s')::float8),
            p_worker, p_now) r;
    END LOOP;
END
$$;
COMMENT ON FUNCTION genretry.record_deliveries(jsonb, text, timestamptz) IS
    'daemon: record a batch of delivery outcomes in one transaction';
