-- genretry.circuit_after(row, outcome, label, lease, failure, success, policy, worker, now): the generator's
-- circuit breaker after one recorded outcome (SPEC 4), called by record_delivery. Returns what changed:
-- 'opened', 'closed' or NULL.
--   closed  -> open     after pause_after_failures circuit failures in a row (5xx, time-outs, unreachable),
--                       or at once on 401/403 (our credentials are refused: retrying is pointless)
--   probing -> open     when the probe (the one delivery let through after the pause) fails; the pause doubles
--   probing/closed -> closed  on a success (a counted, non-failure outcome) of the probe or while closed
--   probing -> open now when the probe told nothing (released, unsendable): the next claim probes again
-- Successes only write when something changes, so the happy path stays a read.
CREATE OR REPLACE FUNCTION genretry.circuit_after(
    h public.generation_history, p_outcome text, p_label text, p_lease_id uuid, p_failure boolean,
    p_success boolean, p_pol genretry.policy, p_worker text, p_now timestamptz)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st genretry.generator_state;
    change text;
BEGIN
    SELECT * INTO st FROM genretry.generator_state s WHERE s.generator = h.generator;
    IF p_failure THEN
        INSERT INTO genretry.generator_state AS s (generator, consecutive_failures, updated_at)
        VALUES (h.generator, 1, p_now)
        ON CONFLICT (generator) DO UPDATE SET consecutive_failures = least(s.consecutive_failures, 2147483646) + 1, updated_at = p_now
        RETURNING * INTO st;
        IF (st.state = 'closed' AND (p_outcome = 'unauthorized' OR st.consecutive_failures >= p_pol.pause_after_failures))
           OR (st.state = 'probing' AND st.probe_lease = p_lease_id) THEN
            UPDATE genretry.generator_state s SET
                state = 'open', pauses = least(s.pauses, 2147483646) + 1, opened_at = p_now,
                open_until = p_now + least(p_pol.backoff_max, p_pol.pause_for * power(2, least(s.pauses, 20))),
                reason = format('%s from %s', p_label, h.generator), probe_lease = NULL, probe_until = NULL
            WHERE s.generator = h.generator
            RETURNING * INTO st;
            change := 'opened';
            PERFORM genretry.log_event(h.id, h.generator, h.attempt, 'generator_paused',
                jsonb_build_object('reason', st.reason, 'open_until', st.open_until,
                                   'consecutive_failures', st.consecutive_failures),
                p_worker, session_user, p_now);
        END IF;
    ELSIF p_success AND FOUND AND (st.consecutive_failures > 0 OR st.state <> 'closed') THEN
        IF st.state = 'closed' OR st.probe_lease = p_lease_id THEN
            UPDATE genretry.generator_state s SET
                state = 'closed', consecutive_failures = 0, pauses = 0, reason = NULL,
                open_until = NULL, probe_lease = NULL, probe_until = NULL, updated_at = p_now
            WHERE s.generator = h.generator;
            IF st.state <> 'closed' THEN
                change := 'closed';
                PERFORM genretry.log_event(h.id, h.generator, h.attempt, 'generator_resumed',
                    jsonb_build_object('after', st.reason), p_worker, session_user, p_now);
            END IF;
        END IF;
    ELSIF p_outcome IN ('released', 'unsendable') AND FOUND AND st.state = 'probing' AND st.probe_lease = p_lease_id THEN
        -- the probe told us nothing: let the next claim probe again
        UPDATE genretry.generator_state s SET state = 'open', open_until = p_now, probe_lease = NULL,
            probe_until = NULL WHERE s.generator = h.generator;
    END IF;

    RETURN change;
END
$$;
COMMENT ON FUNCTION genretry.circuit_after(public.generation_history, text, text, uuid, boolean, boolean,
                                           genretry.policy, text, timestamptz) IS
    'the generator circuit breaker after one recorded delivery outcome (called by record_delivery)';
