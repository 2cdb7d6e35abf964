-- genretry.next_wakeup(now): the earliest moment the daemon has work: the first deadline of a live row
-- whose generator may be claimed, or the end of a generator's pause. NULL when nothing is scheduled.
-- Called by the daemon after each sweep; an index scan on the live-row index, one row read.
CREATE OR REPLACE FUNCTION genretry.next_wakeup(p_now timestamptz DEFAULT now())
RETURNS timestamptz
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = genretry, public, pg_temp
AS $$
    SELECT least(
        (SELECT h.deadline_at FROM public.generation_history h, genretry.dispatch_filter(p_now) f
         WHERE h.status IN ('pending', 'generating') AND h.deadline_at IS NOT NULL
           AND NOT (h.generator = ANY (f.blocked))
           AND (f.star_enabled OR h.generator = ANY (f.enabled))
         ORDER BY h.deadline_at LIMIT 1),
        (SELECT min(s.open_until) FROM genretry.generator_state s WHERE s.state = 'open'),
        (SELECT min(s.probe_until) FROM genretry.generator_state s WHERE s.state = 'probing'))
$$;
COMMENT ON FUNCTION genretry.next_wakeup(timestamptz) IS 'daemon: when the next row becomes due';
