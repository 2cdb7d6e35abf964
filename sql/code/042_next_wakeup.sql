-- genretry.next_wakeup(now): the earliest moment the daemon has work: the first deadline of a live row
-- whose generator may be claimed, or the end of a generator's pause when a row of it is due by then (else
-- that row's deadline). NULL when nothing is scheduled.
-- Called by the daemon after each sweep; an index scan on the live-row index, one row read.
-- Always finite and within a day of now (a row with a deadline at +/-infinity must not make the daemon's
-- arithmetic raise); callers other than the owner get the server's clock (issue 10).
DROP FUNCTION IF EXISTS genretry.next_wakeup(timestamptz);  -- was LANGUAGE sql
CREATE FUNCTION genretry.next_wakeup(p_now timestamptz DEFAULT now())
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    f record;
    first_deadline timestamptz;
    wake timestamptz;
BEGIN
    p_now := genretry.caller_clock(p_now);  -- only the owner brings a clock (issue 10, class 10)
    SELECT * INTO f FROM genretry.dispatch_filter(p_now);
    SELECT h.deadline_at INTO first_deadline FROM public.generation_history h
    WHERE h.status IN ('pending', 'generating') AND h.deadline_at IS NOT NULL
      AND NOT (h.generator = ANY (f.blocked))
      AND (f.star_enabled OR h.generator = ANY (f.enabled))
    ORDER BY h.deadline_at LIMIT 1;
    -- A paused generator is work only once its pause is over AND one of its rows is due: the later of the
    -- two; a pause with nothing behind it wakes nobody (else the daemon claims in vain once a second).
    wake := least(
        first_deadline,
        (SELECT min(greatest(CASE s.state WHEN 'open' THEN s.open_until ELSE s.probe_until END, r.first_due))
         FROM genretry.generator_state s
         CROSS JOIN LATERAL (
             SELECT min(h.deadline_at) AS first_due FROM public.generation_history h
             WHERE h.status IN ('pending', 'generating') AND h.generator = s.generator
               AND h.deadline_at IS NOT NULL) r
         WHERE s.state IN ('open', 'probing') AND r.first_due IS NOT NULL
           -- a disabled generator's pause ending is no work (it is never probed): without this the daemon
           -- would wake for it at once, again and again, once its pause is over
           AND (f.star_enabled OR s.generator = ANY (f.enabled))
           AND NOT EXISTS (SELECT 1 FROM genretry.policy p WHERE p.generator = s.generator AND NOT p.enabled)));
    IF NOT (wake BETWEEN p_now - interval '1 day' AND p_now + interval '1 day') THEN
        wake := CASE WHEN wake < p_now THEN p_now - interval '1 day' ELSE p_now + interval '1 day' END;
    END IF;
    RETURN wake;
END
$$;
COMMENT ON FUNCTION genretry.next_wakeup(timestamptz) IS 'daemon: when the next row becomes due';
