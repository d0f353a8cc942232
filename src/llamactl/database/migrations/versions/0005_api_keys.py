"""Inference keys stored in the database, each allowed everything or some instances.

A key is kept only as its keyed hash (HMAC-SHA-256 with the server's secret, hex), looked
up by one indexed equality; ``prefix`` is the non-secret start of the key, for display.
``key_permissions`` lists the instances a ``per_instance`` key may use, and whether it
may start them on demand and evict another to make room; a row goes with its key and
with its instance.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _flag(name: str, default: int) -> sa.Column[int]:
    return sa.Column(
        name,
        sa.Integer,
        sa.CheckConstraint(f"{name} IN (0, 1)", name=f"ck_{name}_flag"),
        nullable=False,
        server_default=sa.text(str(default)),
    )


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "name",
            sa.Text,
            sa.CheckConstraint("length(name) BETWEEN 1 AND 100", name="ck_api_keys_name"),
            nullable=False,
        ),
        sa.Column("key_hash", sa.Text, nullable=False),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False, server_default=sa.text("'system'")),
        sa.Column(
            "permission_mode",
            sa.Text,
            sa.CheckConstraint(
                "permission_mode IN ('allow_all', 'per_instance')", name="ck_api_keys_mode"
            ),
            nullable=False,
        ),
        sa.Column(
            "max_concurrent",
            sa.Integer,
            sa.CheckConstraint(
                "max_concurrent IS NULL OR max_concurrent > 0", name="ck_api_keys_concurrent"
            ),
            nullable=True,
        ),
        sa.Column(
            "requests_per_minute",
            sa.Integer,
            sa.CheckConstraint(
                "requests_per_minute IS NULL OR requests_per_minute > 0", name="ck_api_keys_rate"
            ),
            nullable=True,
        ),
        sa.Column("expires_at", sa.Integer, nullable=True),
        _flag("disabled", 0),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Integer, nullable=False),
        sa.Column("last_used_at", sa.Integer, nullable=True),
        sa.Column("requests", sa.Integer, nullable=False, server_default=sa.text("0")),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_api_keys_key_hash", "api_keys", ["key_hash"], unique=True)
    op.create_table(
        "key_permissions",
        sa.Column(
            "key_id",
            sa.Integer,
            sa.ForeignKey("api_keys.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "instance_id",
            sa.Integer,
            sa.ForeignKey("instances.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        _flag("can_start", 1),
        _flag("can_evict", 1),
    )
    op.create_index("idx_key_permissions_instance_id", "key_permissions", ["instance_id"])


def downgrade() -> None:
    op.drop_index("idx_key_permissions_instance_id", table_name="key_permissions")
    op.drop_table("key_permissions")
    op.drop_index("idx_api_keys_key_hash", table_name="api_keys")
    op.drop_table("api_keys")
