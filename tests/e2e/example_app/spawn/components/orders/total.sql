CREATE FUNCTION customer_total(customer integer) RETURNS numeric
LANGUAGE sql STABLE
AS $$ SELECT coalesce(sum(amount), 0) FROM orders WHERE customer_id = customer $$;
