-- genretry.failed(generator, since, reason, max_rows): failed generations, newest first, for the admin CLI
-- (`processor failed`) and psql. Filters are optional (NULL: any): generator is an exact name, since a
-- lower bound on when the row failed (its updated_at), reason a case-insensitive substring of
-- error_message. `how` is the event that failed it (exhausted, rejected, unreachable, given_up, failed)
-- or NULL when the row failed outside the processor. SECURITY INVOKER: the caller's rights apply.
CREATE OR REPLACE FUNCTION genretry.failed(
    p_generator text DEFAULT NULL, p_since timestamptz DEFAULT NULL, p_reason text DEFAULT NULL,
    max_rows integer DEFAULT 50)
RETURNS TABLE (id uuid, user_id uuid, generator text, failed_at timestamptz, retry_count integer,
               how text, error_message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 100000 THEN
        RAISE EXCEPTION 'max_rows must be 1..100000 (got %)', max_rows USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT g.id, g.user_id, g.generator, g.updated_at, g.retry_count,
           (SELECT e.event FROM genretry.events e
            WHERE e.generation_id = g.id
              AND e.event IN ('exhausted', 'rejected', 'unreachable', 'given_up', 'failed')
            ORDER BY e.id DESC LIMIT 1),
           g.error_message
    FROM public.generation_history g
    WHERE g.status = 'failed'
      AND (p_generator IS NULL OR g.generator = p_generator)
      AND (p_since IS NULL OR g.updated_at >= p_since)
      AND (p_reason IS NULL OR strpos(lower(coalesce(g.error_message, '')), lower(p_reason)) > 0)
    ORDER BY g.updated_at DESC, g.id
    LIMIT max_rows;
END
$$;
COMMENT ON FUNCTION genretry.failed(text, timestamptz, text, integer) IS
    'admin: failed generations, newest first, filtered by generator, time and reason (substring)';
REVOKE ALL ON FUNCTION genretry.failed(text, timestamptz, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION genretry.failed(text, timestamptz, text, integer) TO genretry_admin;
