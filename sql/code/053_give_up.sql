-- genretry.give_up(id, reason, force, now): mark a live generation failed with the reason.
CREATE OR REPLACE FUNCTION genretry.give_up(
    p_id uuid, reason text, force boolean DEFAULT false, p_now timestamptz DEFAULT now())
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h public.generation_history;
BEGIN
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'give_up needs a reason' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    p_now := genretry.caller_clock(p_now);  -- only the owner brings a clock (issue 10, class 10)
    h := genretry.admin_row(p_id, force, p_now);
    IF h.status NOT IN ('pending', 'generating') THEN
        RAISE EXCEPTION 'generation % is already %', p_id, h.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    UPDATE public.generation_history g SET status = 'failed', error_message = reason, lease_id = NULL
    WHERE g.id = p_id;
    PERFORM genretry.log_event(p_id, h.generator, h.attempt, 'given_up',
        jsonb_build_object('reason', reason, 'previous_status', h.status, 'forced', force AND h.lease_until > p_now),
        NULL, current_user, p_now);
    RETURN format('%s: failed (%s)', p_id, reason);
END
$$;
COMMENT ON FUNCTION genretry.give_up(uuid, text, boolean, timestamptz) IS 'admin: fail a live generation with a reason';
