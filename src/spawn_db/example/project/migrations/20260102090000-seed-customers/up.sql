BEGIN;

CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO settings VALUES ('company', {{ variables.company | default("Example Ltd") }});
{% if env == "dev" %}
-- Demo data for the dev environment only (see `environment` in spawn.toml).
{%- for c in read_yaml("data/customers.yaml") %}
INSERT INTO customers (id, first_name, last_name, email)
VALUES ({{ c.id }}, {{ c.first_name }}, {{ c.last_name }}, {{ c.email }});
{%- endfor %}
{% endif %}
COMMIT;
