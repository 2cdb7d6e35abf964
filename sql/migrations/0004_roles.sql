-- 0004: roles without login, for least privilege (grants: sql/code/900_grants.sql).
--   genretry_processor  the daemon: claim, record, next wake-up, schema check; no table access at all
--   genretry_admin      psql admins and the admin CLI: the admin API, the views, the policy
--   genretry_generator  generator functions: genretry.heartbeat and genretry.finish
-- Grant them to login roles: CREATE ROLE genretry_daemon LOGIN PASSWORD '...' IN ROLE genretry_processor;
-- Roles are cluster-wide: an existing one is kept. Creating them needs CREATEROLE (the platform's
-- postgres role has it).
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'genretry_processor') THEN
        CREATE ROLE genretry_processor NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'genretry_admin') THEN
        CREATE ROLE genretry_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'genretry_generator') THEN
        CREATE ROLE genretry_generator NOLOGIN;
    END IF;
END
$roles$;
