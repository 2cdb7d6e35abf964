-- genretry.effective_policy(generator): the policy row for a generator, or the * default row.
-- Called by the row trigger, the claim, record_delivery and the views. plpgsql so that its plan is kept
-- for the session (it runs on every heartbeat that moves a deadline).
DROP FUNCTION IF EXISTS genretry.effective_policy(text) CASCADE;  -- was LANGUAGE sql; views are re-created after
CREATE FUNCTION genretry.effective_policy(p_generator text)
RETURNS genretry.policy
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found genretry.policy;
BEGIN
    SELECT p.* INTO found FROM genretry.policy p
    WHERE p.generator = p_generator OR p.generator = '*'
    ORDER BY p.generator = '*'
    LIMIT 1;
    RETURN found;
END
$$;
COMMENT ON FUNCTION genretry.effective_policy(text) IS 'policy of a generator, falling back to the * row';
