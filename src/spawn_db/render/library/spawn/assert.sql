{#- spawn's assertion macros (docs/assertions.md): {% import "spawn/assert.sql" as t %}

Each assertion is plain SQL and psql meta-commands, no extension: one SELECT
computes the line and stores it with \gset, and \echo prints it, so the line
reads the same whatever the test's \pset settings (aligned or not, headers,
footers, expanded). The number counts per psql session in the psql variable
spawn_tap_n (spawn_tap_failed counts failures): psql variables survive
ROLLBACK and \connect, which a GUC or a temporary sequence would not.

Arguments: `condition`, `got`, `query`, `sql` are SQL text, inserted as
written; expected values are values (a string becomes a quoted literal, a
number a number, none NULL; mark SQL with |safe). Names and descriptions are
values. -#}

{#- One TAP line from `source`: SQL returning one row with `passed` and `diagnostics`. -#}
{%- macro _report(source, description) -%}
\if :{?spawn_tap_n} \else \set spawn_tap_n 0 \set spawn_tap_failed 0 \endif
SELECT :spawn_tap_n + 1 AS n, :spawn_tap_failed + (NOT v.passed)::int AS failed,
  CASE WHEN v.passed THEN 'ok ' ELSE 'not ok ' END || (:spawn_tap_n + 1)
  {%- if description is not none and description != "" %} || ' - ' || {{ description }}{% endif %}
  || CASE WHEN v.passed THEN '' ELSE chr(10) || v.diagnostics END AS line
FROM (SELECT coalesce(s.passed, false) AS passed, s.diagnostics FROM ({{ source }}) AS s) AS v \gset spawn_tap_
\echo :spawn_tap_line
{%- endmacro -%}

{#- Passes when `condition` (SQL) is true; false and NULL fail. -#}
{%- macro ok(condition, description=none) -%}
{%- set source -%}
SELECT x.got AS passed,
  '#      got: ' || coalesce(x.got::text, 'NULL') || chr(10) || '# expected: true' AS diagnostics
FROM (SELECT ({{ condition|safe }})::boolean AS got) AS x
{%- endset -%}
{{ _report(source, description) }}
{%- endmacro -%}

{#- Passes when `got` (SQL) IS NOT DISTINCT FROM `expected` (a value). -#}
{%- macro is(got, expected, description=none) -%}
{%- set source -%}
SELECT x.got IS NOT DISTINCT FROM ({{ expected }}) AS passed,
  '#      got: ' || coalesce(x.got::text, 'NULL') || chr(10)
  || '# expected: ' || coalesce(({{ expected }})::text, 'NULL') AS diagnostics
FROM (SELECT ({{ got|safe }}) AS got) AS x
{%- endset -%}
{{ _report(source, description) }}
{%- endmacro -%}

{#- Passes when `got` (SQL) IS DISTINCT FROM `unexpected` (a value). -#}
{%- macro isnt(got, unexpected, description=none) -%}
{%- set source -%}
SELECT x.got IS DISTINCT FROM ({{ unexpected }}) AS passed,
  '#      got: ' || coalesce(x.got::text, 'NULL') || chr(10)
  || '# expected: anything but ' || coalesce(({{ unexpected }})::text, 'NULL') AS diagnostics
FROM (SELECT ({{ got|safe }}) AS got) AS x
{%- endset -%}
{{ _report(source, description) }}
{%- endmacro -%}

{#- Passes when `got` (SQL) matches the regular expression `pattern` (a value; the ~ operator). -#}
{%- macro matches(got, pattern, description=none) -%}
{%- set source -%}
SELECT x.got::text ~ ({{ pattern }}) AS passed,
  '#      got: ' || coalesce(x.got::text, 'NULL') || chr(10)
  || '# expected: a match for ' || ({{ pattern }}) AS diagnostics
FROM (SELECT ({{ got|safe }}) AS got) AS x
{%- endset -%}
{{ _report(source, description) }}
{%- endmacro -%}

{#- Runs `sql` (SQL text) in a DO block's subtransaction; what it raised is kept in two settings. -#}
{%- macro _attempt(sql) -%}
DO $spawn_tap$
BEGIN
  PERFORM set_config('spawn.tap_sqlstate', '', false), set_config('spawn.tap_message', '', false);
  EXECUTE {{ sql|escape_literal }};
EXCEPTION WHEN OTHERS THEN
  PERFORM set_config('spawn.tap_sqlstate', SQLSTATE, false), set_config('spawn.tap_message', SQLERRM, false);
END
$spawn_tap$;
{%- endmacro -%}

{#- Passes when `sql` raises an error; `errcode` (a SQLSTATE) and `message` (exact) narrow it. -#}
{%- macro throws(sql, errcode=none, message=none, description=none) -%}
{%- set source -%}
SELECT e.state <> ''
  {%- if errcode is not none %} AND e.state = {{ errcode }}{% endif %}
  {%- if message is not none %} AND e.message = {{ message }}{% endif %} AS passed,
  '#      got: ' || CASE WHEN e.state = '' THEN 'no error' ELSE 'error ' || e.state || ': ' || e.message END
  || chr(10) || '# expected: error'
  {%- if errcode is not none %} || ' ' || {{ errcode }}{% endif %}
  {%- if message is not none %} || ': ' || {{ message }}{% endif %} AS diagnostics
FROM (SELECT current_setting('spawn.tap_sqlstate') AS state, current_setting('spawn.tap_message') AS message) AS e
{%- endset -%}
{{ _attempt(sql) }}
{{ _report(source, description) }}
{%- endmacro -%}

{#- Passes when `sql` runs without an error (its effects stay). -#}
{%- macro lives(sql, description=none) -%}
{%- set source -%}
SELECT e.state = '' AS passed,
  '#      got: ' || CASE WHEN e.state = '' THEN 'no error' ELSE 'error ' || e.state || ': ' || e.message END
  || chr(10) || '# expected: no error' AS diagnostics
FROM (SELECT current_setting('spawn.tap_sqlstate') AS state, current_setting('spawn.tap_message') AS message) AS e
{%- endset -%}
{{ _attempt(sql) }}
{{ _report(source, description) }}
{%- endmacro -%}

{#- Passes when the two queries (SQL) return the same rows in the same order, compared as text. -#}
{%- macro results_eq(query, expected_query, description=none) -%}
{%- set source -%}
SELECT d.at IS NULL AS passed,
  '#    results differ beginning at row ' || d.at || chr(10)
  || '#      got: ' || coalesce(d.got[d.at], 'no row') || chr(10)
  || '# expected: ' || coalesce(d.want[d.at], 'no row') AS diagnostics
FROM (SELECT x.got, x.want,
        (SELECT min(i) FROM generate_series(1, greatest(cardinality(x.got), cardinality(x.want))) AS i
         WHERE x.got[i] IS DISTINCT FROM x.want[i]) AS at
      FROM (SELECT (SELECT coalesce(array_agg(r::text), '{}') FROM ({{ query|trim|trim(";")|safe }}) AS r) AS got,
                   (SELECT coalesce(array_agg(r::text), '{}') FROM ({{ expected_query|trim|trim(";")|safe }}) AS r) AS want) AS x) AS d
{%- endset -%}
{{ _report(source, description) }}
{%- endmacro -%}

{#- Passes when `query` (SQL) returns `expected` rows. -#}
{%- macro row_count(query, expected, description=none) -%}
{%- set source -%}
SELECT x.got = ({{ expected }}) AS passed,
  '#      got: ' || x.got || ' rows' || chr(10) || '# expected: ' || coalesce(({{ expected }})::text, 'NULL') || ' rows' AS diagnostics
FROM (SELECT count(*) AS got FROM ({{ query|trim|trim(";")|safe }}) AS r) AS x
{%- endset -%}
{{ _report(source, description) }}
{%- endmacro -%}

{#- Passes when the table `name` (an SQL name: customers, app.customers, "Mixed") exists. -#}
{%- macro has_table(name, description=none) -%}
{%- set source -%}
SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass({{ name }}) AND relkind IN ('r', 'p', 'f')) AS passed,
  '#      got: missing' || chr(10) || '# expected: table ' || {{ name }} AS diagnostics
{%- endset -%}
{{ _report(source, description if description is not none else "table " ~ name ~ " exists") }}
{%- endmacro -%}

{#- Passes when the table `table` (an SQL name) has the column `column` (its exact name). -#}
{%- macro has_column(table, column, description=none) -%}
{%- set source -%}
SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass({{ table }})
               AND attname = {{ column }} AND attnum > 0 AND NOT attisdropped) AS passed,
  '#      got: missing' || chr(10) || '# expected: column ' || {{ column }} || ' of ' || {{ table }} AS diagnostics
{%- endset -%}
{{ _report(source, description if description is not none else table ~ " has " ~ column) }}
{%- endmacro -%}

{#- Passes when the function `name` (an SQL name) exists; `args`, a list of type names, picks one signature. -#}
{%- macro has_function(name, args=none, description=none) -%}
{%- set signature = name if args is none else name ~ "(" ~ args|join(", ") ~ ")" -%}
{%- set source -%}
SELECT EXISTS (
  {%- if args is none %}
  SELECT 1 FROM pg_proc AS p, parse_ident({{ name }}) AS i
  WHERE p.proname = i[cardinality(i)]
    AND CASE WHEN cardinality(i) = 1 THEN pg_function_is_visible(p.oid)
        ELSE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = i[cardinality(i) - 1]) END
  {%- else %}
  SELECT 1 WHERE to_regprocedure({{ signature }}) IS NOT NULL
  {%- endif %}) AS passed,
  '#      got: missing' || chr(10) || '# expected: function ' || {{ signature }} AS diagnostics
{%- endset -%}
{{ _report(source, description if description is not none else "function " ~ signature ~ " exists") }}
{%- endmacro -%}

{#- Passes when the table `table` (an SQL name) has the index `index` (its exact name). -#}
{%- macro has_index(table, index, description=none) -%}
{%- set source -%}
SELECT EXISTS (SELECT 1 FROM pg_index AS x JOIN pg_class AS c ON c.oid = x.indexrelid
               WHERE x.indrelid = to_regclass({{ table }}) AND c.relname = {{ index }}) AS passed,
  '#      got: missing' || chr(10) || '# expected: index ' || {{ index }} || ' on ' || {{ table }} AS diagnostics
{%- endset -%}
{{ _report(source, description if description is not none else table ~ " has index " ~ index) }}
{%- endmacro -%}

{#- Passes when the table `table` (an SQL name) has the row security policy `policy` (its exact name). -#}
{%- macro policy_exists(table, policy, description=none) -%}
{%- set source -%}
SELECT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = to_regclass({{ table }}) AND polname = {{ policy }}) AS passed,
  '#      got: missing' || chr(10) || '# expected: policy ' || {{ policy }} || ' on ' || {{ table }} AS diagnostics
{%- endset -%}
{{ _report(source, description if description is not none else table ~ " has policy " ~ policy) }}
{%- endmacro -%}

{#- Prints `# message` (a value). -#}
{%- macro diag(message) -%}
SELECT '# ' || {{ message }} AS line \gset spawn_tap_
\echo :spawn_tap_line
{%- endmacro -%}

{#- Prints the plan line `1..N` after the last assertion, and how many failed. -#}
{%- macro finish() -%}
\if :{?spawn_tap_n} \else \set spawn_tap_n 0 \set spawn_tap_failed 0 \endif
SELECT '1..' || :spawn_tap_n || CASE WHEN :spawn_tap_failed > 0
  THEN chr(10) || '# failed ' || :spawn_tap_failed || ' of ' || :spawn_tap_n ELSE '' END AS line \gset spawn_tap_
\echo :spawn_tap_line
{%- endmacro -%}
