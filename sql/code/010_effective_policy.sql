-- genretry.effective_policy(generator): the policy row for a generator, or the * default row.
-- Called by the row trigger, the claim and the views. Parameters: generator name.
CREATE OR REPLACE FUNCTION genretry.effective_policy(p_generator text)
RETURNS genretry.policy
LANGUAGE sql STABLE
SET search_path = genretry, pg_temp
AS $$
    SELECT p.* FROM genretry.policy p
    WHERE p.generator = p_generator OR p.generator = '*'
    ORDER BY p.generator = '*'
    LIMIT 1
$$;
COMMENT ON FUNCTION genretry.effective_policy(text) IS 'policy of a generator, falling back to the * row';
