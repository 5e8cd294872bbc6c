"""Many units at once: tenant schemas in one database, or many targets (issue 18)."""
