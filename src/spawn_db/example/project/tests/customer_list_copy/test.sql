-- Work on a throwaway copy of the database, so the test can change data freely.
\set VERBOSITY terse
SELECT current_database() AS source_db \gset
\c template1
SET client_min_messages = warning;
DROP DATABASE IF EXISTS example_copy;
CREATE DATABASE example_copy TEMPLATE :"source_db";
\c example_copy
DELETE FROM customers WHERE id = 2;
UPDATE customers SET title = 'Dr.' WHERE id = 1;
SELECT id, name FROM customer_list ORDER BY id;
\c :"source_db"
DROP DATABASE example_copy;
-- The original database is untouched.
SELECT count(*) AS customers FROM customers;
