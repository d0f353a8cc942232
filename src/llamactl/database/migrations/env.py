"""Alembic environment: always runs on the connection that ``run_migrations`` hands over."""

from alembic import context
from sqlalchemy import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("llamactl migrations run through llamactl.database.run_migrations")

context.configure(
    connection=connection,
    target_metadata=None,
    transaction_per_migration=True,
    render_as_batch=True,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
