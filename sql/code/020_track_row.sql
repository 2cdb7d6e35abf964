-- genretry.track_row(): BEFORE INSERT OR UPDATE trigger on public.generation_history.
-- Keeps updated_at, status_changed_at, stale_for and deadline_at (SPEC 3.2):
--   pending    -> greatest(heartbeat_at, status change) + pending_stale_after
--   generating -> greatest(heartbeat_at, status change) + stale_after
--   completed, failed -> NULL
-- While the processor manages the row (retry_phase requested/leased/backoff/unsent) it owns deadline_at,
-- except that a heartbeat may push it later (never past an admin's retry request).
--
-- Cost matters here: generators heartbeat often. The UPDATE trigger's WHEN clause (below) is evaluated
-- without calling this function and lets two kinds of update through untouched:
--   * a heartbeat that moves the deadline by less than stale_for/10: deadline_at is indexed, so leaving it
--     alone keeps the update HOT; the claim re-checks real staleness, so an early deadline costs at most
--     one extra look, never a false rescue;
--   * the processor's own lease bookkeeping (lease_id changes, status does not): it sets deadline_at itself.
-- Neither bumps updated_at: it records changes to the generation, not signs of life (heartbeat_at does).
--
-- It also sends the NOTIFY on channel genretry (SPEC 3.3), so one trigger does all of it. Every update
-- that must notify passes the WHEN clause; a NOTIFY from a BEFORE trigger is sent at commit, like any.
-- Payload (JSON, < 1 KB): {"id", "status", "old_status", "generator", "deadline_at", "event"} with event
-- status_changed | deadline_moved | retry_requested. Never for a heartbeat (it only moves a deadline
-- later), and not for the processor's own deadline moves (genretry.quiet = on, set by claim/record):
-- the daemon that made them recomputes its own wake-up.
CREATE OR REPLACE FUNCTION genretry.track_row()
RETURNS trigger
LANGUAGE plpgsql
-- SECURITY DEFINER: the application's own roles update generation_history without any right in
-- schema genretry; the trigger reads the policy and notifies with the owner's rights.
SECURITY DEFINER
SET search_path = genretry, public, pg_temp
AS $$
DECLARE
    pol genretry.policy;
    fresh timestamptz;
    managed boolean := coalesce(NEW.retry_phase IN ('requested', 'leased', 'backoff', 'unsent'), false);
    old_status text := CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END;
    old_deadline timestamptz := CASE WHEN TG_OP = 'UPDATE' THEN OLD.deadline_at END;
    old_phase text := CASE WHEN TG_OP = 'UPDATE' THEN OLD.retry_phase END;
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.status_changed_at := coalesce(NEW.status_changed_at, now());
    ELSE
        NEW.updated_at := now();
        IF NEW.status IS DISTINCT FROM OLD.status THEN
            NEW.status_changed_at := now();
        END IF;
    END IF;

    IF NEW.status IS NULL OR NEW.status NOT IN ('pending', 'generating') THEN
        NEW.deadline_at := NULL;
        NEW.lease_until := NULL;
        NEW.retry_phase := NULL;
        NEW.stale_for := NULL;
        IF TG_OP = 'UPDATE' AND NEW.status IS DISTINCT FROM OLD.status THEN
            PERFORM genretry.notify_row(NEW, old_status, 'status_changed');
        END IF;
        RETURN NEW;
    END IF;

    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status OR NEW.stale_for IS NULL THEN
        pol := genretry.effective_policy(NEW.generator);
        NEW.stale_for := CASE WHEN NEW.status = 'pending' THEN pol.pending_stale_after ELSE pol.stale_after END;
        IF NOT managed AND (TG_OP = 'INSERT' OR NEW.deadline_at IS NOT DISTINCT FROM OLD.deadline_at) THEN
            NEW.deadline_at := coalesce(
                CASE WHEN TG_OP = 'INSERT' THEN NEW.deadline_at END,
                greatest(NEW.heartbeat_at, NEW.status_changed_at) + NEW.stale_for);
        END IF;
    ELSIF NEW.heartbeat_at IS DISTINCT FROM OLD.heartbeat_at AND NEW.heartbeat_at IS NOT NULL
          AND NEW.deadline_at IS NOT DISTINCT FROM OLD.deadline_at
          AND NEW.retry_phase IS DISTINCT FROM 'requested' THEN  -- an admin's request wins
        fresh := greatest(NEW.heartbeat_at, NEW.status_changed_at) + NEW.stale_for;
        IF NEW.deadline_at IS NULL OR fresh > NEW.deadline_at + NEW.stale_for / 10 THEN
            NEW.deadline_at := fresh;
        END IF;
    END IF;

    IF NEW.retry_phase = 'requested' AND (old_phase IS DISTINCT FROM 'requested' OR old_deadline IS DISTINCT FROM NEW.deadline_at) THEN
        PERFORM genretry.notify_row(NEW, old_status, 'retry_requested');
    ELSIF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM old_status THEN
        PERFORM genretry.notify_row(NEW, old_status, 'status_changed');
    ELSIF (NEW.deadline_at < old_deadline OR (old_deadline IS NULL AND NEW.deadline_at IS NOT NULL))
          AND current_setting('genretry.quiet', true) IS DISTINCT FROM 'on' THEN
        PERFORM genretry.notify_row(NEW, old_status, 'deadline_moved');
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS genretry_track_row ON public.generation_history;
DROP TRIGGER IF EXISTS genretry_track_insert ON public.generation_history;
CREATE TRIGGER genretry_track_insert
    BEFORE INSERT ON public.generation_history
    FOR EACH ROW EXECUTE FUNCTION genretry.track_row();
COMMENT ON TRIGGER genretry_track_insert ON public.generation_history IS
    'sets status_changed_at, stale_for and deadline_at of a new generation (genretry)';

DROP TRIGGER IF EXISTS genretry_track_update ON public.generation_history;
CREATE TRIGGER genretry_track_update
    BEFORE UPDATE ON public.generation_history
    FOR EACH ROW WHEN (
        NEW.status IS DISTINCT FROM OLD.status
        OR (NEW.lease_id IS NOT DISTINCT FROM OLD.lease_id AND (
            NEW.heartbeat_at IS NOT DISTINCT FROM OLD.heartbeat_at      -- not a heartbeat: any other change
            OR NEW.stale_for IS NULL OR OLD.deadline_at IS NULL
            OR greatest(NEW.heartbeat_at, NEW.status_changed_at) + NEW.stale_for
               > OLD.deadline_at + NEW.stale_for / 10)))                -- a heartbeat beyond the slack
    EXECUTE FUNCTION genretry.track_row();
COMMENT ON TRIGGER genretry_track_update ON public.generation_history IS
    'keeps updated_at, status_changed_at and deadline_at (genretry); skips heartbeats within the slack';
