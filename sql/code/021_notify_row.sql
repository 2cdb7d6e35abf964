-- genretry.notify_row(): AFTER trigger on public.generation_history; NOTIFY on channel genretry.
-- Fires when a live row is inserted, a status changes, a deadline moves earlier, or an admin asks for a
-- retry; never for a heartbeat (which only moves a deadline later): notifying commits serialize.
-- Deadline moves made by the processor itself (genretry.quiet = on, set by claim/record) stay quiet:
-- the daemon that made them recomputes its own wake-up. Payload (JSON, < 1 KB):
--   {"id", "status", "old_status", "generator", "deadline_at", "event"}
--   event: status_changed | deadline_moved | retry_requested
CREATE OR REPLACE FUNCTION genretry.notify_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = genretry, pg_temp
AS $$
DECLARE
    ev text;
    old_status text := CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END;
BEGIN
    IF NEW.retry_phase = 'requested'
       AND (TG_OP = 'INSERT' OR OLD.retry_phase IS DISTINCT FROM 'requested'
            OR OLD.deadline_at IS DISTINCT FROM NEW.deadline_at) THEN
        ev := 'retry_requested';
    ELSIF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        ev := 'status_changed';
    ELSIF current_setting('genretry.quiet', true) = 'on' THEN
        RETURN NULL;
    ELSE
        ev := 'deadline_moved';
    END IF;
    PERFORM pg_notify('genretry', json_build_object(
        'id', NEW.id,
        'status', NEW.status,
        'old_status', old_status,
        'generator', left(NEW.generator, 200),  -- keeps the payload far below NOTIFY's 8000 bytes
        'deadline_at', NEW.deadline_at,
        'event', ev)::text);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS genretry_notify_insert ON public.generation_history;
CREATE TRIGGER genretry_notify_insert
    AFTER INSERT ON public.generation_history
    FOR EACH ROW WHEN (NEW.status IN ('pending', 'generating'))
    EXECUTE FUNCTION genretry.notify_row();

DROP TRIGGER IF EXISTS genretry_notify_update ON public.generation_history;
CREATE TRIGGER genretry_notify_update
    AFTER UPDATE ON public.generation_history
    FOR EACH ROW WHEN (
        OLD.status IS DISTINCT FROM NEW.status
        OR NEW.deadline_at < OLD.deadline_at
        OR (OLD.deadline_at IS NULL AND NEW.deadline_at IS NOT NULL)
        OR (NEW.retry_phase = 'requested'
            AND (OLD.retry_phase IS DISTINCT FROM NEW.retry_phase OR OLD.deadline_at IS DISTINCT FROM NEW.deadline_at)))
    EXECUTE FUNCTION genretry.notify_row();
