-- genretry.guard_default_policy(): the * policy row is the default of every generator without a row of
-- its own. Without it new rows get no deadline and nothing is ever claimed again, silently. So deleting
-- it, renaming it, or emptying the table is refused with a message saying what to do instead, for every
-- role (the owner included: only disabling the trigger gets past it). Issue 10, class 9.
CREATE OR REPLACE FUNCTION genretry.guard_default_policy()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.generator IS NOT DISTINCT FROM '*' THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'the * row of genretry.policy is the default policy of every generator and cannot be %',
        CASE TG_OP WHEN 'UPDATE' THEN 'renamed' WHEN 'DELETE' THEN 'deleted' ELSE 'truncated away' END
        USING ERRCODE = 'integrity_constraint_violation',
              HINT = 'change its settings with UPDATE genretry.policy SET ... WHERE generator = ''*'' '
                     '(enabled = false pauses every generator without a row of its own)';
END
$$;

DROP TRIGGER IF EXISTS genretry_guard_default_policy ON genretry.policy;
CREATE TRIGGER genretry_guard_default_policy
    BEFORE UPDATE OF generator OR DELETE ON genretry.policy
    FOR EACH ROW WHEN (OLD.generator = '*')
    EXECUTE FUNCTION genretry.guard_default_policy();
COMMENT ON TRIGGER genretry_guard_default_policy ON genretry.policy IS
    'refuses to delete or rename the default (*) policy row';

DROP TRIGGER IF EXISTS genretry_guard_policy_truncate ON genretry.policy;
CREATE TRIGGER genretry_guard_policy_truncate
    BEFORE TRUNCATE ON genretry.policy
    FOR EACH STATEMENT EXECUTE FUNCTION genretry.guard_default_policy();
COMMENT ON TRIGGER genretry_guard_policy_truncate ON genretry.policy IS
    'refuses to empty genretry.policy (the default * row must stay)';

-- A database whose * row was lost before this guard existed gets it back, with the defaults of SPEC 3.4.
INSERT INTO genretry.policy (generator) VALUES ('*') ON CONFLICT (generator) DO NOTHING;
