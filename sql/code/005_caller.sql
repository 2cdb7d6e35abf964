-- genretry.caller_is_owner(): whether the role calling the SQL API is the owner of schema genretry (a
-- member of it) or a superuser. Only such callers may pass their own clock (`p_now`, `p_at`) or a lease
-- longer than genretry.max_lease(): the daemon's, the generators' and the admins' roles get the server's
-- clock (issue 10, class 10). Tests keep a clock by running as the owner.
-- The caller is the role set by SET ROLE, else the session's login role: inside a SECURITY DEFINER
-- function current_user is the function's owner, so it cannot tell.
CREATE OR REPLACE FUNCTION genretry.caller_is_owner()
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- plpgsql, not SQL: a SQL function with a SET clause is never inlined and plans its query on every call
-- (41 against 9 us a call hot, about 0.17 ms of an idle daemon's claim); plpgsql keeps the plan per session.
AS $$
BEGIN
    RETURN coalesce((
        SELECT pg_catalog.pg_has_role(
                   coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user)::name,
                   n.nspowner, 'MEMBER')
        FROM pg_catalog.pg_namespace n WHERE n.nspname = 'genretry'), false);
END
$$;
COMMENT ON FUNCTION genretry.caller_is_owner() IS
    'whether the caller (SET ROLE, else login role) owns schema genretry or is a superuser';

-- genretry.caller_clock(now): the clock a call of the SQL API runs on: the caller's own for the owner
-- (tests), the server's (clock_timestamp()) for everyone else. A value within this transaction's span of
-- the server clock (the default now()) is the server's clock already: kept without a catalog look-up.
CREATE OR REPLACE FUNCTION genretry.caller_clock(p_now timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$  -- plpgsql for the same reason as caller_is_owner (21 against 5 us a call hot)
BEGIN
    IF p_now BETWEEN pg_catalog.now() AND pg_catalog.clock_timestamp() THEN
        RETURN p_now;
    ELSIF p_now IS NOT NULL AND genretry.caller_is_owner() THEN
        RETURN p_now;
    END IF;
    RETURN pg_catalog.clock_timestamp();
END
$$;
COMMENT ON FUNCTION genretry.caller_clock(timestamptz) IS
    'the caller''s clock for the owner, the server''s clock for any other role';

-- The longest lease a caller other than the owner may take: the daemon's own limit (PROCESSOR_LEASE).
CREATE OR REPLACE FUNCTION genretry.max_lease()
RETURNS interval
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT interval '1 hour' $$;
