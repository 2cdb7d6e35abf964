-- genretry.reset(id, force, now): the seed's manual fix, as one call. Status pending, retry_count 0,
-- dispatch_failures 0, error_message NULL, due now (the daemon is notified and dispatches it at once).
-- A legacy admin_note 'retry:N' becomes 'retry:0'. Writes a `reset` event with the caller as actor.
CREATE OR REPLACE FUNCTION genretry.reset(p_id uuid, force boolean DEFAULT false, p_now timestamptz DEFAULT now())
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h public.generation_history;
BEGIN
    p_now := genretry.caller_clock(p_now);  -- only the owner brings a clock (issue 10, class 10)
    h := genretry.admin_row(p_id, force, p_now);
    UPDATE public.generation_history g SET
        status = 'pending', retry_count = 0, dispatch_failures = 0, error_message = NULL,
        admin_note = CASE WHEN g.admin_note ~ '^\s*retry:\s*\d+\s*$' THEN 'retry:0' ELSE g.admin_note END,
        retry_phase = 'requested', deadline_at = p_now, lease_id = NULL, lease_until = NULL
    WHERE g.id = p_id;
    PERFORM genretry.log_event(p_id, h.generator, h.attempt, 'reset',
        jsonb_build_object('previous_status', h.status, 'previous_retry_count', h.retry_count,
                           'previous_error', h.error_message, 'forced', force AND h.lease_until > p_now),
        NULL, current_user, p_now);
    RETURN format('%s: reset to pending and due now (was %s after %s automatic %s)', p_id, h.status,
                  h.retry_count, CASE WHEN h.retry_count = 1 THEN 'retry' ELSE 'retries' END);
END
$$;
COMMENT ON FUNCTION genretry.reset(uuid, boolean, timestamptz) IS
    'admin: start a generation over: pending, counters zeroed, due now';
