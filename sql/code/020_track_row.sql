-- genretry.track_row(): BEFORE INSERT OR UPDATE trigger on public.generation_history.
-- Keeps updated_at, status_changed_at and deadline_at (SPEC 3.2):
--   pending    -> greatest(heartbeat_at, status change) + pending_stale_after
--   generating -> greatest(heartbeat_at, status change) + stale_after
--   completed, failed -> NULL
-- While the processor manages the row (retry_phase requested/leased/backoff/unsent) it owns deadline_at,
-- except that a heartbeat may push it later (never past an admin's retry request). A heartbeat rewrites deadline_at only when it moves by more
-- than stale_after/10: deadline_at is indexed, so every rewrite is a non-HOT update; the claim re-checks
-- real staleness, so a deadline that is a little early costs at most one extra look, never a false rescue.
CREATE OR REPLACE FUNCTION genretry.track_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = genretry, public, pg_temp
AS $$
DECLARE
    pol genretry.policy;
    stale interval;
    fresh timestamptz;
    managed boolean := coalesce(NEW.retry_phase IN ('requested', 'leased', 'backoff', 'unsent'), false);
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
        RETURN NEW;
    END IF;

    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        IF NOT managed AND (TG_OP = 'INSERT' OR NEW.deadline_at IS NOT DISTINCT FROM OLD.deadline_at) THEN
            pol := genretry.effective_policy(NEW.generator);
            stale := CASE WHEN NEW.status = 'pending' THEN pol.pending_stale_after ELSE pol.stale_after END;
            NEW.deadline_at := coalesce(
                CASE WHEN TG_OP = 'INSERT' THEN NEW.deadline_at END,
                greatest(NEW.heartbeat_at, NEW.status_changed_at) + stale);
        END IF;
    ELSIF NEW.heartbeat_at IS DISTINCT FROM OLD.heartbeat_at AND NEW.heartbeat_at IS NOT NULL
          AND NEW.deadline_at IS NOT DISTINCT FROM OLD.deadline_at
          AND NEW.retry_phase IS DISTINCT FROM 'requested' THEN  -- an admin's request wins
        pol := genretry.effective_policy(NEW.generator);
        stale := CASE WHEN NEW.status = 'pending' THEN pol.pending_stale_after ELSE pol.stale_after END;
        fresh := greatest(NEW.heartbeat_at, NEW.status_changed_at) + stale;
        IF NEW.deadline_at IS NULL OR fresh > NEW.deadline_at + stale / 10 THEN
            NEW.deadline_at := fresh;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS genretry_track_row ON public.generation_history;
CREATE TRIGGER genretry_track_row
    BEFORE INSERT OR UPDATE ON public.generation_history
    FOR EACH ROW EXECUTE FUNCTION genretry.track_row();
COMMENT ON TRIGGER genretry_track_row ON public.generation_history IS
    'keeps updated_at, status_changed_at and deadline_at (genretry)';
