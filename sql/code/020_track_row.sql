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
--
-- Hostile values (issue 10, classes 3 and 11). Timestamps are kept within a window around the server
-- clock: heartbeat_at and status_changed_at within [clock - 100 years, clock + 1 hour] (a sign of life
-- from the future is clock skew at best), deadline_at and lease_until within [clock - 100 years,
-- clock + stale_for + 1 hour]; +/-infinity and far years are clamped, so the arithmetic of the claim and
-- the views stays finite. A written stale_for is recomputed from the policy. While a lease lives, the
-- deadline is never before its end, whatever is written to deadline_at: a leased row is not due again.
-- The readers (claim, next_wakeup, the views, the metrics) do not rely on this: a row written behind the
-- trigger's back (triggers disabled, or with a lease_id change, which the WHEN clause lets through) is
-- survived there too.
CREATE OR REPLACE FUNCTION genretry.track_row()
RETURNS trigger
LANGUAGE plpgsql
-- SECURITY DEFINER: the application's own roles update generation_history without any right in
-- schema genretry; the trigger reads the policy and notifies with the owner's rights.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pol genretry.policy;
    fresh timestamptz;
    managed boolean := coalesce(NEW.retry_phase IN ('requested', 'leased', 'backoff', 'unsent'), false);
    old_status text := CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END;
    old_deadline timestamptz := CASE WHEN TG_OP = 'UPDATE' THEN OLD.deadline_at END;
    old_phase text := CASE WHEN TG_OP = 'UPDATE' THEN OLD.retry_phase END;
    clock timestamptz := clock_timestamp();
    far_past timestamptz := clock - interval '100 years';
    soon timestamptz := clock + interval '1 hour';
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.status_changed_at := coalesce(NEW.status_changed_at, now());
    ELSE
        NEW.updated_at := now();
        IF NEW.status IS DISTINCT FROM OLD.status THEN
            NEW.status_changed_at := now();
        END IF;
    END IF;
    IF NOT (NEW.heartbeat_at BETWEEN far_past AND soon) THEN
        NEW.heartbeat_at := CASE WHEN NEW.heartbeat_at < far_past THEN far_past ELSE soon END;
    END IF;
    IF NOT (NEW.status_changed_at BETWEEN far_past AND soon) THEN
        NEW.status_changed_at := CASE WHEN NEW.status_changed_at < far_past THEN far_past ELSE soon END;
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

    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status OR NEW.stale_for IS NULL
       OR NEW.stale_for IS DISTINCT FROM OLD.stale_for OR NOT (NEW.stale_for BETWEEN interval '0' AND interval '1 year') THEN
        pol := genretry.effective_policy(NEW.generator);
        NEW.stale_for := least(CASE WHEN NEW.status = 'pending' THEN pol.pending_stale_after ELSE pol.stale_after END,
                               interval '1 year');
        IF NOT managed AND (TG_OP = 'INSERT' OR NEW.deadline_at IS NOT DISTINCT FROM OLD.deadline_at) THEN
            NEW.deadline_at := coalesce(
                CASE WHEN TG_OP = 'INSERT' THEN NEW.deadline_at END,
                greatest(NEW.heartbeat_at, NEW.status_changed_at) + NEW.stale_for);
        END IF;
    ELSIF NEW.heartbeat_at IS DISTINCT FROM OLD.heartbeat_at AND NEW.heartbeat_at IS NOT NULL
          AND NEW.deadline_at IS NOT DISTINCT FROM OLD.deadline_at
          AND NEW.retry_phase IS DISTINCT FROM 'requested' THEN  -- an admin's request wins
        fresh := greatest(NEW.heartbeat_at, NEW.status_changed_at) + NEW.stale_for;
        IF NEW.deadline_at IS NULL OR fresh > NEW.deadline_at + (NEW.stale_for OPERATOR(pg_catalog./) 10::float8) THEN
            NEW.deadline_at := fresh;
        END IF;
    END IF;

    -- the window (stale_for comes from the policy: bounded there)
    soon := clock + least(coalesce(NEW.stale_for, interval '0'), interval '1 year') + interval '1 hour';
    IF NOT (NEW.deadline_at BETWEEN far_past AND soon) THEN
        NEW.deadline_at := CASE WHEN NEW.deadline_at < far_past THEN far_past ELSE soon END;
    END IF;
    IF NOT (NEW.lease_until BETWEEN far_past AND soon) THEN
        NEW.lease_until := CASE WHEN NEW.lease_until < far_past THEN far_past ELSE soon END;
    END IF;
    -- a lease is a lease: the row is not due before its lease ends
    IF NEW.lease_until > clock AND (NEW.deadline_at IS NULL OR NEW.deadline_at < NEW.lease_until) THEN
        NEW.deadline_at := NEW.lease_until;
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
            OR NEW.deadline_at IS DISTINCT FROM OLD.deadline_at         -- a heartbeat that writes more
            OR NEW.status_changed_at IS DISTINCT FROM OLD.status_changed_at
            OR NEW.lease_until IS DISTINCT FROM OLD.lease_until
            OR NEW.stale_for IS DISTINCT FROM OLD.stale_for
            OR NEW.heartbeat_at OPERATOR(pg_catalog.<) NEW.status_changed_at  -- a heartbeat from before (-infinity)
            OR NEW.stale_for IS NULL OR OLD.deadline_at IS NULL
            OR (greatest(NEW.heartbeat_at, NEW.status_changed_at) OPERATOR(pg_catalog.+) NEW.stale_for)
               OPERATOR(pg_catalog.>)
               (OLD.deadline_at OPERATOR(pg_catalog.+) (NEW.stale_for OPERATOR(pg_catalog./) 10::float8)))))
               -- a heartbeat beyond the slack (operators named: see 000_search_path.sql)
    EXECUTE FUNCTION genretry.track_row();
COMMENT ON TRIGGER genretry_track_update ON public.generation_history IS
    'keeps updated_at, status_changed_at and deadline_at (genretry); skips heartbeats within the slack';
