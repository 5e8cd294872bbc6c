{% from "lib/macros.sql" import insert_user, grant_all, wrap %}
{% import "lib/macros.sql" as m %}
-- env: {{ env }}
{% include "util/add_func.sql" %}
{% if env == "dev" %}
SELECT 'dev only';
{% endif %}
{{ insert_user("O'Reilly", true) }}
{{ m.insert_user(variables.user.name) }}
{{ grant_all(variables.role) }}
{% call wrap() %}SELECT {{ variables.count }};{% endcall %}
SELECT {{ variables.tags }}, {{ variables.user }};
{% set s = "data/settings.json"|read_json %}
SELECT {{ s.app }}, {{ s.limits.users }}, {{ s.tags }};
{% set t = "data/settings.toml"|read_toml %}
SELECT {{ t.name }}, {{ t.sizes }};
{% set y = read_yaml("data/settings.yaml") %}
SELECT {{ y.owner }}, {{ y.enabled }}, {{ y.ratio }};
SELECT decode({{ read_file("data/logo.bin")|base64_encode }}, 'base64');
SELECT {{ read_file("data/logo.bin") }};
SELECT {{ gen_uuid_v5("spawn.example.com") }}::uuid;
SELECT {{ "schema.table"|escape_identifier }}, {{ "x"|escape_literal }}, {{ "raw_sql()"|safe }};
SELECT {{ none }}, {{ undefined_thing }}, {{ 1.5 }}, {{ -3 }}, {{ false }};
