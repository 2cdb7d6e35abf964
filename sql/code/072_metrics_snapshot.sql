-- genretry.metrics_snapshot(): the gauges of a Prometheus scrape (due rows, oldest overdue age, paused
-- generators) without giving the daemon's role read access to the table. Reads the live-row index.
CREATE OR REPLACE FUNCTION genretry.metrics_snapshot(
    OUT due bigint, OUT oldest_overdue_s double precision, OUT paused bigint)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FILTER (WHERE h.deadline_at <= now()),
           -- bounded first: a deadline at -infinity must not make the scrape raise (issue 10, class 3)
           coalesce(extract(epoch FROM max(now() - greatest(h.deadline_at, now() - interval '100 years'))
                                     FILTER (WHERE h.deadline_at <= now())), 0)::float8,
           (SELECT count(*) FROM genretry.generator_state s WHERE s.state <> 'closed')
    FROM public.generation_history h WHERE h.status IN ('pending', 'generating')
$$;
