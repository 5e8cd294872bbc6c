"""Golden-file SQL tests: the suite, the psql runner, diffs and reports (SPEC §7)."""
