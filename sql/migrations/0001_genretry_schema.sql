-- 0001: schema genretry and its tables (policy, event log, generator circuit state).
-- Applied once by `processor migrate`. State only: functions, triggers and views live in sql/code.

CREATE SCHEMA IF NOT EXISTS genretry;
COMMENT ON SCHEMA genretry IS 'Generation retry processor: policy, audit log, admin API (see SELECT * FROM genretry.stuck)';

CREATE TABLE genretry.policy (
    generator              text PRIMARY KEY,
    stale_after            interval NOT NULL DEFAULT '7 minutes',
    pending_stale_after    interval NOT NULL DEFAULT '2 minutes',
    max_retries            integer  NOT NULL DEFAULT 2,
    backoff_base           interval NOT NULL DEFAULT '5 seconds',
    backoff_max            interval NOT NULL DEFAULT '5 minutes',
    max_dispatch_failures  integer  NOT NULL DEFAULT 8,
    enabled                boolean  NOT NULL DEFAULT true,
    pause_after_failures   integer  NOT NULL DEFAULT 5,
    pause_for              interval NOT NULL DEFAULT '30 seconds',
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT policy_positive CHECK (
        stale_after > interval '0' AND pending_stale_after > interval '0'
        AND backoff_base > interval '0' AND backoff_max >= backoff_base AND pause_for > interval '0'),
    CONSTRAINT policy_counts CHECK (
        max_retries >= 0 AND max_dispatch_failures >= 1 AND pause_after_failures >= 1)
);
COMMENT ON TABLE genretry.policy IS
    'Retry policy per generator; the * row is the default. Change behaviour with plain UPDATE.';
COMMENT ON COLUMN genretry.policy.stale_after IS
    'a generating row with no heartbeat or status change for this long is due for rescue';
COMMENT ON COLUMN genretry.policy.pending_stale_after IS 'a pending row that nobody started for this long is due';
COMMENT ON COLUMN genretry.policy.max_retries IS 'automatic retries before the row fails as exhausted';
COMMENT ON COLUMN genretry.policy.max_dispatch_failures IS
    'consecutive deliveries that never reached the generator before the row fails as unreachable';
COMMENT ON COLUMN genretry.policy.pause_after_failures IS
    'consecutive failed deliveries to one generator that open its circuit (pause)';
COMMENT ON COLUMN genretry.policy.pause_for IS 'first pause length; doubles on each re-open, capped at backoff_max';

INSERT INTO genretry.policy (generator) VALUES ('*');

CREATE TABLE genretry.events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    generation_id  uuid,
    generator      text,
    attempt        integer,
    event          text NOT NULL,
    detail         jsonb NOT NULL DEFAULT '{}',
    worker         text,
    actor          text NOT NULL DEFAULT current_user,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_generation_idx ON genretry.events (generation_id, id);
CREATE INDEX events_at_idx ON genretry.events (at);
COMMENT ON TABLE genretry.events IS
    'Append-only audit log: every claim, delivery, failed delivery, rejection, exhaustion and admin action';

CREATE TABLE genretry.generator_state (
    generator             text PRIMARY KEY,
    state                 text NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'probing')),
    consecutive_failures  integer NOT NULL DEFAULT 0,
    pauses                integer NOT NULL DEFAULT 0,
    reason                text,
    opened_at             timestamptz,
    open_until            timestamptz,
    probe_lease           uuid,
    probe_until           timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE genretry.generator_state IS
    'Circuit breaker per generator, shared by every daemon: open = paused, probing = one trial delivery';
