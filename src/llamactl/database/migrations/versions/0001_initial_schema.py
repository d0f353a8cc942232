"""The instances table of the persistence spec, exactly.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instances",
        # No NOT NULL on id, as in the spec: an INTEGER PRIMARY KEY is the rowid and never NULL.
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True, nullable=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("backend_type", sa.Text, nullable=False),
        sa.Column("backend_config_json", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'stopped'")),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Integer, nullable=False),
        sa.Column("auto_restart", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("max_restarts", sa.Integer, nullable=False, server_default=sa.text("-1")),
        sa.Column("restart_delay", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("on_demand_start", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("idle_timeout", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("docker_enabled", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("command_override", sa.Text, nullable=True),
        sa.Column("nodes", sa.Text, nullable=True),
        sa.Column("environment", sa.Text, nullable=True),
        sa.Column("owner_user_id", sa.Text, nullable=True),
        sa.CheckConstraint(
            "backend_type IN ('llama_cpp', 'mlx_lm', 'vllm')", name="ck_instances_backend_type"
        ),
        sa.CheckConstraint(
            "status IN ('stopped', 'running', 'failed', 'restarting', 'shutting_down')",
            name="ck_instances_status",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_instances_name", "instances", ["name"], unique=True)
    op.create_index("idx_instances_status", "instances", ["status"])
    op.create_index("idx_instances_backend_type", "instances", ["backend_type"])


def downgrade() -> None:
    op.drop_index("idx_instances_backend_type", table_name="instances")
    op.drop_index("idx_instances_status", table_name="instances")
    op.drop_index("idx_instances_name", table_name="instances")
    op.drop_table("instances")
