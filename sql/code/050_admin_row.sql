-- genretry.admin_row(id, force, now): lock one generation for an admin call. Raises a clear error for an
-- unknown id, and refuses a row whose delivery is in flight (a live lease) unless force. Called by reset,
-- retry_now and give_up; SECURITY INVOKER, like them, so the caller's own rights apply.
CREATE OR REPLACE FUNCTION genretry.admin_row(p_id uuid, p_force boolean, p_now timestamptz)
RETURNS public.generation_history
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h public.generation_history;
BEGIN
    IF p_id IS NULL THEN
        RAISE EXCEPTION 'generation id is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO h FROM public.generation_history g WHERE g.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'generation % not found', p_id USING ERRCODE = 'no_data_found';
    END IF;
    IF h.lease_until > p_now AND NOT coalesce(p_force, false) THEN
        RAISE EXCEPTION 'generation % has a delivery in flight (attempt %, worker %, lease ends in %)',
            p_id, h.attempt, h.leased_by, genretry.human_interval(h.lease_until - p_now)
            USING ERRCODE = 'object_in_use', HINT = 'wait for it, or call again with force => true';
    END IF;
    RETURN h;
END
$$;
