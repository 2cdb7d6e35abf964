-- genretry.apply_policy(): AFTER INSERT/UPDATE/DELETE trigger on genretry.policy (statement level).
-- An admin's plain UPDATE of the policy takes effect at once: every live row that the generator owns
-- (not one the processor is handling) gets its stale_for and deadline recomputed. Deadlines that move
-- earlier notify the daemon through the row trigger. Live rows are few: this reads the live-row index.
CREATE OR REPLACE FUNCTION genretry.apply_policy()
RETURNS trigger
LANGUAGE plpgsql
-- SECURITY DEFINER: the application's own roles update generation_history without any right in
-- schema genretry; the trigger reads the policy and notifies with the owner's rights.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.generation_history h
    -- the last sign of life is bounded first, so a row written behind the row trigger's back (an infinite
    -- or far timestamp) cannot make an admin's policy change fail (issue 10, class 3)
    SET stale_for = x.stale,
        deadline_at = CASE WHEN x.last_sign IS NOT NULL THEN
            greatest(least(x.last_sign, clock_timestamp() + interval '1 hour'),
                     clock_timestamp() - interval '100 years') + x.stale END
    FROM (
        SELECT g.id, CASE WHEN g.status = 'pending' THEN p.pending_stale_after ELSE p.stale_after END AS stale,
               greatest(g.heartbeat_at, g.status_changed_at) AS last_sign
        FROM public.generation_history g
        CROSS JOIN LATERAL genretry.effective_policy(g.generator) p
        WHERE g.status IN ('pending', 'generating') AND coalesce(g.retry_phase, 'delivered') = 'delivered'
    ) x
    WHERE h.id = x.id AND h.stale_for IS DISTINCT FROM x.stale;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS genretry_apply_policy ON genretry.policy;
CREATE TRIGGER genretry_apply_policy
    AFTER INSERT OR UPDATE OR DELETE ON genretry.policy
    FOR EACH STATEMENT EXECUTE FUNCTION genretry.apply_policy();
