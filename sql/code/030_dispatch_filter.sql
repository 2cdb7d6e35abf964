-- genretry.dispatch_filter(now): which generators' due rows may be claimed now.
--   blocked:      paused (circuit open, not yet ready to probe), probing, or disabled by policy
--   probe_ready:  circuit open and its pause over: one row may be claimed as a probe
--   star_enabled: whether generators without a policy row of their own are enabled
--   enabled:      generators enabled by a policy row of their own
-- Called by claim and next_wakeup, so both apply the same rule.
CREATE OR REPLACE FUNCTION genretry.dispatch_filter(p_now timestamptz DEFAULT now())
RETURNS TABLE (blocked text[], probe_ready text[], star_enabled boolean, enabled text[])
LANGUAGE sql STABLE
SET search_path = genretry, pg_temp
AS $$
    SELECT
        coalesce((SELECT array_agg(s.generator) FROM genretry.generator_state s
                  WHERE (s.state = 'open' AND s.open_until > p_now)
                     OR (s.state = 'probing' AND s.probe_until > p_now)), '{}')
        || coalesce((SELECT array_agg(p.generator) FROM genretry.policy p
                     WHERE NOT p.enabled AND p.generator <> '*'), '{}'),
        coalesce((SELECT array_agg(s.generator) FROM genretry.generator_state s
                  WHERE (s.state = 'open' AND s.open_until <= p_now)
                     OR (s.state = 'probing' AND s.probe_until <= p_now)), '{}'),
        coalesce((SELECT p.enabled FROM genretry.policy p WHERE p.generator = '*'), true),
        coalesce((SELECT array_agg(p.generator) FROM genretry.policy p
                  WHERE p.enabled AND p.generator <> '*'), '{}')
$$;
