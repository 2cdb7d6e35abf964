-- genretry.use_token(jti, expires_at) and genretry.token_seen(jti): the replay guard of scoped tokens in the
-- database, for generators running several instances (SPEC 6: a jti opens one delivery, once; 409 on reuse).
-- Called by generators (the kit's SqlReplayGuard, processor.replay.SqlReplayGuard) as genretry_generator.
--   use_token   records the use; true the first time, false when the jti was used already (atomic: of two
--               concurrent uses, one wins). Kept until the token expires by the caller's clock, but at least
--               10 minutes by the database's (a verifier whose clock is behind still takes the token for
--               valid when the database would call it expired: up to 5 minutes of skew are covered, scoped
--               tokens living 5) and at most 2 hours (the processor's tokens live an hour at most: a hostile
--               expiry cannot keep a row for ever). Each call also deletes up to two expired entries, so the
--               table holds about the tokens of the last minutes without any scheduled clean-up.
--   token_seen  the cheap pre-check before the owner look-up: used and not yet expired.
CREATE OR REPLACE FUNCTION genretry.use_token(p_jti text, p_expires_at timestamptz)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- the same jti held by another open transaction is waited for 5 s at most (lock_not_available, a 503 for the
-- verifier), so a stuck transaction cannot keep generators' connections waiting
SET lock_timeout = '5s'
AS $$
DECLARE
    clock timestamptz := clock_timestamp();
    fresh boolean;
BEGIN
    IF p_jti IS NULL OR length(p_jti) NOT BETWEEN 1 AND 200 OR p_expires_at IS NULL THEN
        RAISE EXCEPTION 'genretry.use_token: a jti of 1 to 200 characters and an expiry are required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    p_expires_at := least(greatest(p_expires_at, clock + interval '10 minutes'), clock + interval '2 hours');
    DELETE FROM genretry.used_tokens u
    WHERE u.jti IN (SELECT o.jti FROM genretry.used_tokens o WHERE o.expires_at < clock
                    ORDER BY o.expires_at LIMIT 2 FOR UPDATE SKIP LOCKED);
    -- an expired entry of the same jti is taken over (the verifier refuses an expired token before this)
    INSERT INTO genretry.used_tokens AS u (jti, expires_at) VALUES (p_jti, p_expires_at)
    ON CONFLICT (jti) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE u.expires_at < clock
    RETURNING true INTO fresh;
    RETURN coalesce(fresh, false);
END
$$;
COMMENT ON FUNCTION genretry.use_token(text, timestamptz) IS
    'generators: record the use of a scoped token''s jti; false when it was used already (replay)';

CREATE OR REPLACE FUNCTION genretry.token_seen(p_jti text)
RETURNS boolean
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM genretry.used_tokens u WHERE u.jti = p_jti AND u.expires_at >= clock_timestamp());
END
$$;
COMMENT ON FUNCTION genretry.token_seen(text) IS
    'generators: whether a scoped token''s jti was used already and has not expired';
