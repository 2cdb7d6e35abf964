-- Every file of sql/code is applied in one transaction, under this search_path (SET LOCAL: it ends with
-- the transaction). What these files create is parsed once, at creation: a trigger's WHEN clause and the
-- views keep the operators and functions they were resolved to. With the migrating role's usual path
-- ("$user", public), a function or operator that any role with CREATE on public had defined beforehand
-- (an `interval / integer`, a `format(text, integer, ...)`) could be bound into them and later run as
-- whoever reads the view. So nothing here is resolved through a schema that others can write to, and
-- every object is named with its schema (issue 10, class 4).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
