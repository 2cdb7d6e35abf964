-- genretry.retry_now(id, force, now): make a live row due now, keeping its retry counter.
-- The daemon is notified (retry_requested) and dispatches it without waiting for a tick.
CREATE OR REPLACE FUNCTION genretry.retry_now(p_id uuid, force boolean DEFAULT false, p_now timestamptz DEFAULT now())
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h public.generation_history;
    pol genretry.policy;
BEGIN
    p_now := genretry.caller_clock(p_now);  -- only the owner brings a clock (issue 10, class 10)
    h := genretry.admin_row(p_id, force, p_now);
    pol := genretry.effective_policy(h.generator);
    IF h.status NOT IN ('pending', 'generating') THEN
        RAISE EXCEPTION 'generation % is %, not live: use genretry.reset(%) to start it over', p_id, h.status, p_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    UPDATE public.generation_history g SET
        retry_phase = 'requested', deadline_at = p_now, lease_id = NULL, lease_until = NULL
    WHERE g.id = p_id;
    PERFORM genretry.log_event(p_id, h.generator, h.attempt, 'retry_now',
        jsonb_build_object('retry_count', h.retry_count, 'forced', force AND h.lease_until > p_now),
        NULL, current_user, p_now);
    RETURN format('%s: due now (%s of %s automatic retries used)%s', p_id, h.retry_count, pol.max_retries,
        CASE WHEN h.retry_count >= pol.max_retries
             THEN '; retries are spent, so the next sweep fails it: use genretry.reset to start over' ELSE '' END);
END
$$;
COMMENT ON FUNCTION genretry.retry_now(uuid, boolean, timestamptz) IS 'admin: make a live row due now';
