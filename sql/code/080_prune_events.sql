-- genretry.prune_events(older_than, batch): retention of the audit log. Deletes at most `batch` events
-- older than `older_than` (oldest first) and returns how many it deleted; the caller repeats until a call
-- returns less than `batch`. One short transaction per batch: no long lock, no table-wide DELETE.
-- Called hourly by the daemon (PROCESSOR_EVENTS_RETENTION, default 30 days) and by admins from psql.
-- SECURITY DEFINER so the daemon's role needs no DELETE right on the table; the clock is the server's.
CREATE OR REPLACE FUNCTION genretry.prune_events(older_than interval, batch integer DEFAULT 5000)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    deleted integer;
BEGIN
    IF older_than IS NULL OR older_than < interval '1 hour' THEN
        RAISE EXCEPTION 'prune_events: older_than must be at least 1 hour (got %)', older_than
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch IS NULL OR batch < 1 OR batch > 100000 THEN
        RAISE EXCEPTION 'prune_events: batch must be 1..100000 (got %)', batch
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- SKIP LOCKED: an event another transaction holds is simply pruned next time.
    DELETE FROM genretry.events e
    WHERE e.id IN (SELECT o.id FROM genretry.events o
                   WHERE o.at < pg_catalog.now() OPERATOR(pg_catalog.-) older_than
                   ORDER BY o.at LIMIT batch FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;
COMMENT ON FUNCTION genretry.prune_events(interval, integer) IS
    'retention: delete at most batch events older than older_than; repeat until it returns less than batch';
REVOKE ALL ON FUNCTION genretry.prune_events(interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION genretry.prune_events(interval, integer) TO genretry_processor, genretry_admin;
