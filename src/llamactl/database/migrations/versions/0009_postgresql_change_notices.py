"""On PostgreSQL, a notice on channel ``llamactl_changes`` for every configuration change.

Several llamactl processes may serve over one PostgreSQL database (routing replicas).
Each keeps the instances and keys in memory; these triggers tell every one of them, with
``NOTIFY`` (delivered when the writing transaction commits, whoever wrote), what to read
again:

- ``instance:<name>`` when a row of ``instances`` is inserted or deleted, or when an
  update sets one of its configuration columns. A status write (status, failure,
  ``updated_at`` only) sends nothing: each replica learns a backend's state from the node
  that runs it.
- ``keys`` when a key or its permissions are added, removed or changed (row triggers:
  a statement that changes no row, such as the cascade of deleting an instance no key
  names, sends nothing; PostgreSQL folds the same notice sent many times in one
  transaction into one); the count of a key's requests and its last use (written in
  batches by every replica) send nothing.

SQLite, which has one llamactl per file, gets no triggers.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CHANNEL = "llamactl_changes"
# What a configuration write sets; a status write sets none of these.
INSTANCE_CONFIGURATION = (
    "backend_type", "backend_config_json", "auto_restart", "max_restarts", "restart_delay",
    "on_demand_start", "idle_timeout", "docker_enabled", "command_override", "nodes",
    "environment", "loading_progress",
)  # fmt: skip
KEY_SETTINGS = (
    "name", "key_hash", "prefix", "owner", "permission_mode", "max_concurrent",
    "requests_per_minute", "expires_at", "disabled",
)  # fmt: skip

_UPGRADE = (
    f"""
CREATE FUNCTION llamactl_instance_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('{CHANNEL}', 'instance:' || OLD.name);
    ELSE
        PERFORM pg_notify('{CHANNEL}', 'instance:' || NEW.name);
    END IF;
    RETURN NULL;
END
$$
""",
    f"""
CREATE FUNCTION llamactl_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', 'keys');
    RETURN NULL;
END
$$
""",
    """
CREATE TRIGGER llamactl_instance_written AFTER INSERT OR DELETE ON instances
FOR EACH ROW EXECUTE FUNCTION llamactl_instance_changed()
""",
    f"""
CREATE TRIGGER llamactl_instance_configured AFTER UPDATE OF {", ".join(INSTANCE_CONFIGURATION)}
ON instances FOR EACH ROW EXECUTE FUNCTION llamactl_instance_changed()
""",
    """
CREATE TRIGGER llamactl_key_written AFTER INSERT OR DELETE ON api_keys
FOR EACH ROW EXECUTE FUNCTION llamactl_keys_changed()
""",
    f"""
CREATE TRIGGER llamactl_key_configured AFTER UPDATE OF {", ".join(KEY_SETTINGS)} ON api_keys
FOR EACH ROW EXECUTE FUNCTION llamactl_keys_changed()
""",
    """
CREATE TRIGGER llamactl_permissions_written AFTER INSERT OR UPDATE OR DELETE
ON key_permissions FOR EACH ROW EXECUTE FUNCTION llamactl_keys_changed()
""",
)
_DOWNGRADE = (
    "DROP TRIGGER llamactl_permissions_written ON key_permissions",
    "DROP TRIGGER llamactl_key_configured ON api_keys",
    "DROP TRIGGER llamactl_key_written ON api_keys",
    "DROP TRIGGER llamactl_instance_configured ON instances",
    "DROP TRIGGER llamactl_instance_written ON instances",
    "DROP FUNCTION llamactl_keys_changed()",
    "DROP FUNCTION llamactl_instance_changed()",
)


def upgrade() -> None:
    _run(_UPGRADE)


def downgrade() -> None:
    _run(_DOWNGRADE)


def _run(statements: tuple[str, ...]) -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    for statement in statements:
        connection.execute(sa.text(statement))
