-- genretry.history(id): the event log of one generation, oldest first. Raises for an unknown id.
CREATE OR REPLACE FUNCTION genretry.history(p_id uuid)
RETURNS TABLE (at timestamptz, attempt integer, event text, detail jsonb, worker text, actor text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.generation_history g WHERE g.id = p_id)
       AND NOT EXISTS (SELECT 1 FROM genretry.events e WHERE e.generation_id = p_id) THEN
        RAISE EXCEPTION 'generation % not found', p_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY
    SELECT e.at, e.attempt, e.event, e.detail, e.worker, e.actor
    FROM genretry.events e WHERE e.generation_id = p_id ORDER BY e.at, e.id;
END
$$;
COMMENT ON FUNCTION genretry.history(uuid) IS 'admin: the event log of one generation, oldest first';
