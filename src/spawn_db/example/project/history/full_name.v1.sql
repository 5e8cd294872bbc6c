-- A customer's display name. Edited in place over time: migrations include
-- it, and each migration's pin keeps the version it was written against.
CREATE OR REPLACE FUNCTION full_name(c customers) RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT c.first_name || ' ' || coalesce(c.last_name, '') $$;
