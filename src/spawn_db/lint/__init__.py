"""Static checks of rendered migrations: PostgreSQL's own parser and risky-DDL rules.

``source_map`` renders a migration the way apply does while recording where each
piece of the output came from; ``split`` cuts the output into statements the way
psql would; ``parse`` runs each statement through ``pglast`` (libpg_query);
``rules`` holds the lint rules; ``lint`` runs them over migrations and returns
``report`` dataclasses. ``deps`` reads what each statement defines and references
(the recreate rule, SP020); ``depgraph`` is ``spawn component deps``.
"""
