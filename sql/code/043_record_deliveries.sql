-- genretry.record_deliveries(outcomes, worker, now): record many delivery outcomes in one transaction.
-- Called by the daemon, which gathers outcomes for a few milliseconds: one commit (one WAL flush) and one
-- round trip for a batch instead of one per delivery. Each element is applied by record_delivery, so the
-- rules live in one place. outcomes: a JSON array of
--   {"id", "lease_id", "outcome", "http_status", "detail", "retry_after_s"}
-- Returns one row per element, in order, with record_delivery's columns and the element's id.
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
BEGIN
    IF jsonb_typeof(p_outcomes) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'record_deliveries: outcomes must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR o IN SELECT value FROM pg_catalog.jsonb_array_elements(p_outcomes) LOOP
        rid := (o ->> 'id')::uuid;
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
