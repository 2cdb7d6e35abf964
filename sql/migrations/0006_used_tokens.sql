-- 0006: scoped tokens already used (SPEC 6: a jti opens one delivery, once), shared by every instance of a
-- generator. An edge function runs as many isolates: a guard in memory refuses a replay only in the isolate
-- that saw the token first. genretry.use_token (sql/code/062_used_tokens.sql) records a use and prunes.
CREATE TABLE IF NOT EXISTS genretry.used_tokens (
    jti        text        PRIMARY KEY CHECK (length(jti) BETWEEN 1 AND 200),
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS used_tokens_expires_idx ON genretry.used_tokens (expires_at);
COMMENT ON TABLE genretry.used_tokens IS
    'jti of each scoped token a generator accepted, until the token expires (genretry.use_token)';
