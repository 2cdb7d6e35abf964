-- 0003: each live row keeps the staleness interval its deadline was computed with (stale_for).
-- It lets the row trigger's WHEN clause decide, without calling any function, whether a heartbeat must
-- move the deadline; most heartbeats then run no trigger code at all and stay HOT updates.
ALTER TABLE public.generation_history ADD COLUMN IF NOT EXISTS stale_for interval;

UPDATE public.generation_history g
SET stale_for = CASE WHEN g.status = 'pending' THEN p.pending_stale_after ELSE p.stale_after END
FROM genretry.policy p
WHERE p.generator = '*' AND g.status IN ('pending', 'generating');

COMMENT ON COLUMN public.generation_history.stale_for IS
    'staleness interval of the current status, from genretry.policy (kept by genretry triggers)';
