CREATE SCHEMA audit;
CREATE TABLE audit.log (id bigint GENERATED ALWAYS AS IDENTITY, what text NOT NULL);
{% include "audit/stamp.sql" %}
