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
SET search_path = genretry, public, pg_temp
AS $$
BEGIN
    UPDATE public.generation_history h
    SET stale_for = x.stale, deadline_at = greatest(h.heartbeat_at, h.status_changed_at) + x.stale
    FROM (
        SELECT g.id, CASE WHEN g.status = 'pending' THEN p.pending_stale_after ELSE p.stale_after END AS stale
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
