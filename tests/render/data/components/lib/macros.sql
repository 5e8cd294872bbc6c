{% macro insert_user(name, admin=false) -%}
INSERT INTO users (name, admin) VALUES ({{ name }}, {{ admin }});
{%- endmacro %}
{% macro grant_all(role) -%}
GRANT ALL ON ALL TABLES IN SCHEMA public TO {{ role|escape_identifier }};
{%- endmacro %}
{% macro wrap() -%}
BEGIN;
{{ caller() }}
COMMIT;
{%- endmacro %}
