"""Root-cause analysis over ClickHouse (see issue 5; not built yet)."""
