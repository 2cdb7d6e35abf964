-- genretry.notify_row(row, old_status, event): NOTIFY genretry with a row's payload. Called by track_row.
-- The generator name is cut to 200 characters, so the payload stays far below NOTIFY's 8000 bytes.
DROP TRIGGER IF EXISTS genretry_notify_insert ON public.generation_history;  -- replaced by track_row
DROP TRIGGER IF EXISTS genretry_notify_update ON public.generation_history;
DROP FUNCTION IF EXISTS genretry.notify_row();
CREATE OR REPLACE FUNCTION genretry.notify_row(p_row public.generation_history, p_old_status text, p_event text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('genretry', json_build_object(
        'id', p_row.id,
        'status', p_row.status,
        'old_status', p_old_status,
        'generator', left(p_row.generator, 200),
        'deadline_at', p_row.deadline_at,
        'event', p_event)::text);
END
$$;
