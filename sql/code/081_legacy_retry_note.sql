-- genretry.legacy_retry_note(): BEFORE UPDATE OF admin_note trigger on public.generation_history.
-- The seed's runbook (`SET status = 'pending', admin_note = 'retry:0', error_message = NULL`) keeps
-- working after adoption: an UPDATE that writes admin_note = 'retry:N' and does not set retry_count
-- itself sets retry_count = N, with a `retry_count_set` event naming the session's user. Without this
-- the note would be ignored and the next sweep would fail the row again as exhausted.
-- SECURITY DEFINER: application roles write generation_history without rights in schema genretry.
CREATE OR REPLACE FUNCTION genretry.legacy_retry_note()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted integer := substring(NEW.admin_note FROM '^\s*retry:\s*(\d{1,9})\s*$')::integer;
BEGIN
    IF wanted IS NULL OR wanted = NEW.retry_count OR NEW.retry_count IS DISTINCT FROM OLD.retry_count THEN
        RETURN NEW;  -- not the legacy shape, nothing to change, or the statement set retry_count itself
    END IF;
    NEW.retry_count := wanted;
    PERFORM genretry.log_event(NEW.id, NEW.generator, NEW.attempt, 'retry_count_set',
        pg_catalog.jsonb_build_object('retry_count', wanted, 'previous_retry_count', OLD.retry_count,
                                      'via', 'admin_note'),
        NULL, session_user::text, pg_catalog.now());
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION genretry.legacy_retry_note() FROM PUBLIC;

DROP TRIGGER IF EXISTS genretry_legacy_retry_note ON public.generation_history;
-- Named to sort before genretry_track_update: BEFORE triggers fire in name order.
CREATE TRIGGER genretry_legacy_retry_note
    BEFORE UPDATE OF admin_note ON public.generation_history
    FOR EACH ROW WHEN (NEW.admin_note ~ '^\s*retry:\s*\d{1,9}\s*$')
    EXECUTE FUNCTION genretry.legacy_retry_note();
COMMENT ON TRIGGER genretry_legacy_retry_note ON public.generation_history IS
    'the legacy runbook: admin_note = ''retry:N'' sets retry_count = N, with an event (genretry)';
