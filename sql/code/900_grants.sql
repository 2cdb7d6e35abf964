-- Grants for the roles of migration 0004. Re-applied after every change of sql/code, so a function
-- re-created by a later file keeps exactly these rights. PUBLIC gets nothing in schema genretry: the
-- SECURITY DEFINER functions (claim, record_delivery, ...) must not be callable by every login role.
REVOKE ALL ON SCHEMA genretry FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA genretry FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA genretry FROM PUBLIC;

GRANT USAGE ON SCHEMA genretry TO genretry_processor, genretry_admin, genretry_generator;

-- the daemon: only SECURITY DEFINER entry points, and reading the schema version
GRANT EXECUTE ON FUNCTION
    genretry.claim(text, integer, interval, timestamptz),
    genretry.record_delivery(uuid, uuid, text, integer, jsonb, interval, text, timestamptz, double precision),
    genretry.record_deliveries(jsonb, text, timestamptz),
    genretry.extend_leases(jsonb, interval),
    genretry.next_wakeup(timestamptz),
    genretry.metrics_snapshot()
    TO genretry_processor;
GRANT SELECT ON genretry.schema_migrations, genretry.schema_code TO genretry_processor, genretry_admin;

-- generators: progress and result, fenced on the attempt
GRANT EXECUTE ON FUNCTION
    genretry.heartbeat(uuid, integer, timestamptz),
    genretry.finish(uuid, integer, text, text, timestamptz)
    TO genretry_generator, genretry_admin;
-- generators: the replay guard of scoped tokens shared by all their instances (062_used_tokens.sql)
GRANT EXECUTE ON FUNCTION
    genretry.use_token(text, timestamptz),
    genretry.token_seen(text)
    TO genretry_generator;

-- admins: the admin API runs with the caller's rights (so events record who did it)
GRANT EXECUTE ON FUNCTION
    genretry.reset(uuid, boolean, timestamptz),
    genretry.retry_now(uuid, boolean, timestamptz),
    genretry.give_up(uuid, text, boolean, timestamptz),
    genretry.history(uuid),
    genretry.admin_row(uuid, boolean, timestamptz),
    genretry.caller_is_owner(),
    genretry.caller_clock(timestamptz),
    genretry.max_lease(),
    genretry.effective_policy(text),
    genretry.human_interval(interval),
    genretry.log_event(uuid, text, integer, text, jsonb, text, text, timestamptz),
    genretry.backoff_delay(genretry.policy, integer, double precision),
    genretry.dispatch_filter(timestamptz),
    genretry.next_wakeup(timestamptz),
    genretry.metrics_snapshot()
    TO genretry_admin;
GRANT SELECT, UPDATE ON public.generation_history TO genretry_admin;
GRANT SELECT, INSERT ON genretry.events TO genretry_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON genretry.policy TO genretry_admin;
GRANT SELECT ON genretry.generator_state, genretry.stuck, genretry.overview TO genretry_admin;
GRANT UPDATE ON genretry.generator_state TO genretry_admin;  -- an admin may close a circuit by hand
