-- genretry.human_interval(interval): "9 min", "40 s", "2 h 5 min" for reasons an admin reads.
-- Called by the views and the exhaustion message.
CREATE OR REPLACE FUNCTION genretry.human_interval(p interval)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN s IS NULL THEN NULL
        WHEN s < 1 THEN round(s * 1000)::bigint || ' ms'
        WHEN s < 120 THEN round(s)::bigint || ' s'
        WHEN s < 7200 THEN round(s / 60)::bigint || ' min'
        WHEN s < 172800 THEN floor(s / 3600)::bigint || ' h ' || round((s % 3600) / 60)::bigint || ' min'
        ELSE round(s / 86400)::bigint || ' days'
    END
    FROM (SELECT abs(extract(epoch FROM p)) AS s) x
$$;
