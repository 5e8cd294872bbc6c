CREATE OR REPLACE VIEW customer_list AS
SELECT c.id, full_name(c) AS name, c.email
FROM customers c;
