-- genretry.backoff_delay(policy, n, jitter): min(backoff_max, backoff_base * 2^(n-1)) with ±20 % jitter.
-- Called by record_delivery. jitter in [0, 1) (0.5 = no jitter) so tests can pin it.
CREATE OR REPLACE FUNCTION genretry.backoff_delay(
    p_policy genretry.policy, p_n integer, p_jitter double precision DEFAULT random())
RETURNS interval
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(p_policy.backoff_max,
                 p_policy.backoff_base * power(2, least(greatest(p_n, 1) - 1, 30)))
           * (0.8 + 0.4 * p_jitter)
$$;
