-- 0002: create public.generation_history, or adopt an existing one without losing a row or a byte.
-- Adoption adds missing columns (IF NOT EXISTS), reads the legacy admin_note 'retry:N' counter once,
-- and gives live rows a deadline. Runs before sql/code exists on a first install, so no trigger fires.

DO $adopt$
DECLARE
    had_retry_count boolean;
    odd_statuses text;
BEGIN
    IF to_regclass('public.generation_history') IS NULL THEN
        CREATE TABLE public.generation_history (
            id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id        uuid NOT NULL,
            status         text NOT NULL DEFAULT 'pending',
            generator      text NOT NULL DEFAULT 'generate-website',
            request        jsonb NOT NULL DEFAULT '{}',
            error_message  text,
            admin_note     text,
            created_at     timestamptz NOT NULL DEFAULT now(),
            updated_at     timestamptz NOT NULL DEFAULT now()
        );
    END IF;

    SELECT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = 'generation_history' AND column_name = 'retry_count'
    ) INTO had_retry_count;

    -- Constant defaults make these metadata-only changes: existing rows are not rewritten.
    ALTER TABLE public.generation_history
        ADD COLUMN IF NOT EXISTS generator         text NOT NULL DEFAULT 'generate-website',
        ADD COLUMN IF NOT EXISTS request           jsonb NOT NULL DEFAULT '{}',
        ADD COLUMN IF NOT EXISTS error_message     text,
        ADD COLUMN IF NOT EXISTS admin_note        text,
        ADD COLUMN IF NOT EXISTS retry_count       integer NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS dispatch_failures integer NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS heartbeat_at      timestamptz,
        ADD COLUMN IF NOT EXISTS deadline_at       timestamptz,
        ADD COLUMN IF NOT EXISTS created_at        timestamptz NOT NULL DEFAULT now(),
        ADD COLUMN IF NOT EXISTS updated_at        timestamptz NOT NULL DEFAULT now(),
        -- the processor's bookkeeping (see docs/design.md)
        ADD COLUMN IF NOT EXISTS status_changed_at timestamptz,
        ADD COLUMN IF NOT EXISTS attempt           integer NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS retry_phase       text,
        ADD COLUMN IF NOT EXISTS lease_id          uuid,
        ADD COLUMN IF NOT EXISTS lease_until       timestamptz,
        ADD COLUMN IF NOT EXISTS leased_by         text,
        ADD COLUMN IF NOT EXISTS last_outcome      text;

    IF NOT had_retry_count THEN
        UPDATE public.generation_history
        SET retry_count = substring(admin_note FROM '^\s*retry:\s*(\d{1,9})\s*$')::integer
        WHERE admin_note ~ '^\s*retry:\s*\d{1,9}\s*$';
    END IF;

    -- The status CHECK is added only when every existing row already satisfies it: adoption never
    -- makes an application's existing writes start failing.
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'public.generation_history'::regclass
                     AND conname = 'generation_history_status_check') THEN
        SELECT string_agg(DISTINCT coalesce(status, 'NULL'), ', ') INTO odd_statuses
        FROM public.generation_history
        WHERE status IS NULL OR status NOT IN ('pending', 'generating', 'completed', 'failed');
        IF odd_statuses IS NULL THEN
            ALTER TABLE public.generation_history ADD CONSTRAINT generation_history_status_check
                CHECK (status IN ('pending', 'generating', 'completed', 'failed'));
        ELSE
            RAISE WARNING 'generation_history has statuses outside the contract (%): status CHECK not added',
                odd_statuses;
        END IF;
    END IF;

    ALTER TABLE public.generation_history ADD CONSTRAINT generation_history_retry_phase_check
        CHECK (retry_phase IN ('delivered', 'requested', 'leased', 'backoff', 'unsent'));

    -- Live rows get a deadline from the default policy; updated_at is the best record of the last change.
    UPDATE public.generation_history g
    SET status_changed_at = coalesce(g.updated_at, g.created_at, now()),
        deadline_at = greatest(g.heartbeat_at, coalesce(g.updated_at, g.created_at, now()))
            + CASE WHEN g.status = 'pending' THEN p.pending_stale_after ELSE p.stale_after END
    FROM genretry.policy p
    WHERE p.generator = '*' AND g.status IN ('pending', 'generating');
END
$adopt$;

-- Due rows and the earliest deadline: an index over live rows only, so its size and the cost of
-- finding work do not grow with the number of finished generations.
CREATE INDEX IF NOT EXISTS generation_history_live_deadline_idx
    ON public.generation_history (deadline_at)
    WHERE status IN ('pending', 'generating');

COMMENT ON COLUMN public.generation_history.deadline_at IS
    'when the row becomes due for rescue (genretry keeps it); NULL in terminal states';
COMMENT ON COLUMN public.generation_history.retry_count IS 'automatic retries delivered so far';
COMMENT ON COLUMN public.generation_history.dispatch_failures IS
    'consecutive failed deliveries of the current retry';
COMMENT ON COLUMN public.generation_history.attempt IS
    'current attempt (0 = the user-started run); genretry.finish and genretry.heartbeat are fenced on it';
COMMENT ON COLUMN public.generation_history.retry_phase IS
    'NULL/delivered: the generator owns the row; requested/leased/backoff/unsent: the processor does';
