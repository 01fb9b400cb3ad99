"""Store: one interface, PostgreSQL and SQLite backends chosen by URL."""
