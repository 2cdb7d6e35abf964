-- genretry.log_event(...): append one row to genretry.events. Called by every genretry function.
-- plpgsql so that the INSERT's plan is kept for the session.
DROP FUNCTION IF EXISTS genretry.log_event(uuid, text, integer, text, jsonb, text, text, timestamptz);
CREATE FUNCTION genretry.log_event(
    p_generation_id uuid, p_generator text, p_attempt integer, p_event text,
    p_detail jsonb DEFAULT '{}', p_worker text DEFAULT NULL, p_actor text DEFAULT current_user,
    p_at timestamptz DEFAULT now())
RETURNS void
LANGUAGE plpgsql
SET search_path = genretry, pg_temp
AS $$
BEGIN
    INSERT INTO genretry.events (generation_id, generator, attempt, event, detail, worker, actor, at)
    VALUES (p_generation_id, p_generator, p_attempt, p_event, coalesce(p_detail, '{}'), p_worker,
            coalesce(p_actor, current_user), p_at);
END
$$;
