CREATE TABLE customers (
    id serial PRIMARY KEY,
    full_name text NOT NULL
);
