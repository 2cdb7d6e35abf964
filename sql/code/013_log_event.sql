-- genretry.log_event(...): append one row to genretry.events. Called by every genretry function.
-- plpgsql so that the INSERT's plan is kept for the session. Runs as the definer function that calls it.
DROP FUNCTION IF EXISTS genretry.log_event(uuid, text, integer, text, jsonb, text, text, timestamptz);
CREATE FUNCTION genretry.log_event(
    p_generation_id uuid, p_generator text, p_attempt integer, p_event text,
    p_detail jsonb DEFAULT '{}', p_worker text DEFAULT NULL, p_actor text DEFAULT current_user,
    p_at timestamptz DEFAULT now())
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Only the owner back-dates (or post-dates) an event: anyone else's `at` outside this transaction's
    -- span of the server clock is replaced by the server clock (issue 10, class 10).
    IF p_at IS NULL OR NOT (p_at BETWEEN now() AND clock_timestamp()) THEN  -- cheap test first
        p_at := genretry.caller_clock(p_at);
    END IF;
    INSERT INTO genretry.events (generation_id, generator, attempt, event, detail, worker, actor, at)
    VALUES (p_generation_id, p_generator, p_attempt, p_event, coalesce(p_detail, '{}'), p_worker,
            coalesce(p_actor, current_user), p_at);
END
$$;
