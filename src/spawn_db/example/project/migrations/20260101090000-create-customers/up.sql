BEGIN;

CREATE TABLE customers (
    id integer PRIMARY KEY,
    first_name text NOT NULL,
    last_name text,
    email text NOT NULL UNIQUE
);

{% include "customers/full_name.sql" %}

{% include "reports/customer_list.sql" %}

COMMIT;
