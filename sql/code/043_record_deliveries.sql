-- genretry.record_deliveries(outcomes, worker, now): record many delivery outcomes in one transaction.
-- Called by the daemon, which gathers outcomes for a few milliseconds: one commit (one WAL flush) and one
-- round trip for a batch instead of one per delivery. Each element is applied by record_delivery, so the
-- rules live in one place. outcomes: a JSON array of
--   {"id", "lease_id", "outcome", "http_status", "detail", "retry_after_s"}
-- Returns one row per element, in order, with record_delivery's columns and the element's id.
CREATE OR REPLACE FUNCTION genretry.record_deliveries(
    p_outcomes jsonb, p_worker text DEFAULT NULL, p_now timestamptz DEFAULT now())
RETURNS TABLE (id uuid, result text, status text, deadline_at timestamptz, retry_count integer,
               dispatch_failures integer, failed_with text, circuit text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = genretry, public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    o jsonb;
BEGIN
    IF jsonb_typeof(p_outcomes) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'record_deliveries: outcomes must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR o IN SELECT value FROM jsonb_array_elements(p_outcomes) LOOP
        RETURN QUERY
        SELECT (o ->> 'id')::uuid, r.* FROM genretry.record_delivery(
            (o ->> 'id')::uuid, (o ->> 'lease_id')::uuid, o ->> 'outcome', (o ->> 'http_status')::integer,
            coalesce(o -> 'detail', '{}'), make_interval(secs => (o ->> 'retry_after_s')::float8),
            p_worker, p_now) r;
    END LOOP;
END
$$;
COMMENT ON FUNCTION genretry.record_deliveries(jsonb, text, timestamptz) IS
    'daemon: record a batch of delivery outcomes in one transaction';
