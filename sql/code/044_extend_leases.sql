-- genretry.extend_leases(items, lease): keep the leases of rows whose outcome the daemon could not record
-- yet (issue 10, class 5), so an outcome that waits is not followed by a second claim and a second delivery.
-- items: a JSON array of {"id", "lease_id"}. A row is extended only while it holds that lease and is not
-- locked by another transaction (never waited for); its lease becomes now + lease (at most max_lease()),
-- never shorter than it was, and its deadline follows (a leased row's deadline is its lease end).
-- Returns the ids extended.
CREATE OR REPLACE FUNCTION genretry.extend_leases(p_items jsonb, p_lease interval)
RETURNS SETOF uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- plain seconds, as in claim: an interval of months and hours compares and adds differently
    until timestamptz := pg_catalog.clock_timestamp() + LEAST(GREATEST(pg_catalog.make_interval(
        secs => GREATEST(LEAST(extract(epoch FROM p_lease), 1e9), -1e9)::float8), interval '1 second'),
        genretry.max_lease());
BEGIN
    IF pg_catalog.jsonb_typeof(p_items) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'extend_leases: items must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_catalog.set_config('genretry.quiet', 'on', true);
    RETURN QUERY
    WITH wanted AS (
        SELECT (i ->> 'id')::uuid AS id, (i ->> 'lease_id')::uuid AS lease_id
        FROM pg_catalog.jsonb_array_elements(p_items) i
    ), free AS (
        SELECT g.id FROM public.generation_history g JOIN wanted w ON w.id = g.id AND w.lease_id = g.lease_id
        WHERE g.status IN ('pending', 'generating')
        FOR UPDATE OF g SKIP LOCKED
    )
    UPDATE public.generation_history g
    SET lease_until = GREATEST(g.lease_until, until), deadline_at = GREATEST(g.lease_until, until)
    FROM free WHERE g.id = free.id
    RETURNING g.id;
END
$$;
COMMENT ON FUNCTION genretry.extend_leases(jsonb, interval) IS
    'daemon: extend the leases of rows whose outcome waits to be recorded (skips locked rows)';
