-- genretry.finish(id, attempt, status, error_message, now): a generator's result, fenced on the attempt.
-- Returns true when recorded. Returns false and writes a `fenced` event when `attempt` is not the current
-- one (a newer retry replaced it) or the row is already finished. status: completed or failed. `now` (the
-- events' time) is the caller's only for the owner; everyone else gets the server's clock (issue 10).
CREATE OR REPLACE FUNCTION genretry.finish(
    p_id uuid, p_attempt integer, p_status text, p_error_message text DEFAULT NULL,
    p_now timestamptz DEFAULT now())
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h public.generation_history;
BEGIN
    p_now := genretry.caller_clock(p_now);
    IF p_status IS NULL OR p_status NOT IN ('completed', 'failed') THEN
        RAISE EXCEPTION 'finish: status must be completed or failed, not %', coalesce(p_status, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO h FROM public.generation_history g WHERE g.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'generation % not found', p_id USING ERRCODE = 'no_data_found';
    END IF;
    IF h.attempt IS DISTINCT FROM p_attempt OR h.status NOT IN ('pending', 'generating') THEN
        PERFORM genretry.log_event(p_id, h.generator, p_attempt, 'fenced',
            jsonb_build_object('reported_attempt', p_attempt, 'current_attempt', h.attempt,
                               'reported_status', p_status, 'row_status', h.status),
            NULL, session_user, p_now);
        RETURN false;
    END IF;
    UPDATE public.generation_history g SET
        status = p_status,
        error_message = CASE WHEN p_status = 'failed' THEN coalesce(p_error_message, 'generation failed') END
    WHERE g.id = p_id;
    PERFORM genretry.log_event(p_id, h.generator, p_attempt, 'finished',
        jsonb_build_object('status', p_status, 'error_message', p_error_message), NULL, session_user, p_now);
    RETURN true;
END
$$;
COMMENT ON FUNCTION genretry.finish(uuid, integer, text, text, timestamptz) IS
    'generator: report the result of an attempt; false (and a fenced event) for a superseded attempt';
