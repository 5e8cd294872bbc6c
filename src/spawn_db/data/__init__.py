"""External data sources: ``spawn data fetch`` and ``spawn data status`` (docs/data.md)."""
