BEGIN;

ALTER TABLE customers ADD COLUMN title text;

-- full_name() was edited in place to show the title; including it again
-- deploys the new version. Older migrations still render the old one.
{% include "customers/full_name.sql" %}

COMMIT;
