"""Alembic's schema migrations of the metadata database (run by registry.model.db.Database.migrate)."""
