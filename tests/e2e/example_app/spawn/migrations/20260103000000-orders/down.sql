DROP FUNCTION customer_total(integer);
DROP TABLE orders;
