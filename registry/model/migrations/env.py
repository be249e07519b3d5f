"""Alembic's environment: migrate on the connection Database.migrate hands over (config.attributes)."""

from alembic import context

from registry.model.tables import Base

context.configure(connection=context.config.attributes["connection"], target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
