-- Every function in schema genretry runs with search_path = pg_catalog, pg_temp (issue 10, class 4).
-- Each file sets it in its CREATE FUNCTION; this pass pins any function a file left on another path (one
-- that reads `public` would let a role with CREATE on public put an operator or a function in the way of
-- a SECURITY DEFINER function, and run it with the owner's rights). Functions here name their tables,
-- types and functions with their schema, so the pinned path changes nothing else.
DO $pin$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'genretry'::regnamespace
          AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', fn);
    END LOOP;
END
$pin$;
