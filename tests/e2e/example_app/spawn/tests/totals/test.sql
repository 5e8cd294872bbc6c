INSERT INTO customers (first_name, last_name) VALUES ('Ada', 'Lovelace');
INSERT INTO orders (customer_id, amount) VALUES (1, 10.50), (1, 4.50);
SELECT customer_total(1);
