CREATE FUNCTION audit.stamp() RETURNS text LANGUAGE sql AS $$ SELECT 'packaged' $$;
