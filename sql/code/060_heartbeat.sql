-- genretry.heartbeat(id, attempt, now): a generator's progress signal; pushes the deadline (see track_row).
-- Returns false, and changes nothing, when `attempt` is no longer current or the row is finished: the
-- generator should stop. Raises for an unknown id. Writes no event (it is called often).
-- `now` is the caller's only for the owner (tests); the generators' role gets the server's clock, so it
-- cannot push a deadline to infinity (issue 10, class 10).
CREATE OR REPLACE FUNCTION genretry.heartbeat(p_id uuid, p_attempt integer, p_now timestamptz DEFAULT now())
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    p_now := genretry.caller_clock(p_now);
    UPDATE public.generation_history g SET heartbeat_at = p_now
    WHERE g.id = p_id AND g.attempt = p_attempt AND g.status IN ('pending', 'generating');
    IF FOUND THEN
        RETURN true;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.generation_history g WHERE g.id = p_id) THEN
        RAISE EXCEPTION 'generation % not found', p_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN false;
END
$$;
COMMENT ON FUNCTION genretry.heartbeat(uuid, integer, timestamptz) IS
    'generator: progress signal for an attempt; false when the attempt was superseded';
