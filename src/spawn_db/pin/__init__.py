"""The content-addressed pin store and snapshots of ``components/`` (SPEC §5)."""
