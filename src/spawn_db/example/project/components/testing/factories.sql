{#- Test-data factories: macros whose output is SQL, passed through unescaped,
    while the values they are given are escaped as literals. -#}
{% macro customer(id, first_name, last_name, email, title=none) -%}
INSERT INTO customers (id, first_name, last_name, email, title)
VALUES ({{ id }}, {{ first_name }}, {{ last_name }}, {{ email }}, {{ title }});
{%- endmacro %}
