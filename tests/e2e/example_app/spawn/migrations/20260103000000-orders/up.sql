CREATE TABLE orders (
    id serial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers,
    amount numeric(10, 2) NOT NULL CHECK (amount > 0)
);
{% include 'orders/total.sql' %}
