"""Persistence: SQL tables (SQLite by default, PostgreSQL by URL), migrations."""
