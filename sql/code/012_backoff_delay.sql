-- genretry.backoff_delay(policy, n, jitter): min(backoff_max, backoff_base * 2^(n-1)) with ±20 % jitter.
-- Called by record_delivery. jitter in [0, 1) (0.5 = no jitter) so tests can pin it.
-- Computed in seconds (double precision), not by multiplying intervals: backoff_base * 2^30 overflows an
-- interval for a base of a few hours written as '24 hours', and one admin's policy must not make every
-- record of a failed delivery raise (issue 10).
CREATE OR REPLACE FUNCTION genretry.backoff_delay(
    p_policy genretry.policy, p_n integer, p_jitter double precision DEFAULT random())
RETURNS interval
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT make_interval(secs => least(
               extract(epoch FROM p_policy.backoff_max)::float8,
               extract(epoch FROM p_policy.backoff_base)::float8 * power(2::float8, least(greatest(p_n, 1) - 1, 30)))
           * (0.8 + 0.4 * least(greatest(coalesce(p_jitter, 0.5), 0), 1)))
$$;
