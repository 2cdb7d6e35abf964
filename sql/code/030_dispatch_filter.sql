-- genretry.dispatch_filter(now): which generators' due rows may be claimed now.
--   blocked:      paused (circuit open, not yet ready to probe), probing, or disabled by policy
--   probe_ready:  circuit open and its pause over, generator enabled: one row may be claimed as a probe
--   star_enabled: whether generators without a policy row of their own are enabled
--   enabled:      generators enabled by a policy row of their own
-- Called by claim and next_wakeup, so both apply the same rule. plpgsql, not SQL: it runs on every claim
-- and plpgsql keeps its plans for the session, where a SQL function is planned again on each call.
DROP FUNCTION IF EXISTS genretry.dispatch_filter(timestamptz);  -- its return type changed once
CREATE FUNCTION genretry.dispatch_filter(p_now timestamptz DEFAULT now(),
    OUT blocked text[], OUT probe_ready text[], OUT star_enabled boolean, OUT enabled text[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT coalesce(bool_and(p.enabled) FILTER (WHERE p.generator = '*'), true),
           coalesce(array_agg(p.generator) FILTER (WHERE p.enabled AND p.generator <> '*'), '{}'),
           coalesce(array_agg(p.generator) FILTER (WHERE NOT p.enabled AND p.generator <> '*'), '{}')
    INTO star_enabled, enabled, blocked
    FROM genretry.policy p;
    -- a disabled generator is never probed: its pause may be over, its rows are still not to be sent
    SELECT blocked || coalesce(array_agg(s.generator) FILTER (
               WHERE (s.state = 'open' AND s.open_until > p_now) OR (s.state = 'probing' AND s.probe_until > p_now)), '{}'),
           coalesce(array_agg(s.generator) FILTER (
               WHERE ((s.state = 'open' AND s.open_until <= p_now) OR (s.state = 'probing' AND s.probe_until <= p_now))
                 AND NOT (s.generator = ANY (blocked)) AND (star_enabled OR s.generator = ANY (enabled))), '{}')
    INTO blocked, probe_ready
    FROM genretry.generator_state s WHERE s.state <> 'closed';
END
$$;
