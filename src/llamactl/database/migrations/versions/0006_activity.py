"""The activity log: one row per ``/v1`` request, written in batches, pruned by age and
count.

``time`` is when the request arrived (unix seconds); durations are seconds. ``instance``
is the instance's name as it was (no foreign key: a row outlives its instance), NULL when
no instance matched. ``key_id`` / ``key_name`` name the stored key that was used, if one
was (never the key). No index but the primary key: every request adds a row and pruning
removes one, and each index would double that work on the request path's behalf; reads go
newest first by ``id``, and pruning by age finds its bound from the oldest ``id`` up.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _flag(name: str) -> sa.Column[int]:
    return sa.Column(
        name,
        sa.Integer,
        sa.CheckConstraint(f"{name} IN (0, 1)", name=f"ck_activity_{name}"),
        nullable=False,
        server_default=sa.text("0"),
    )


def _seconds(name: str) -> sa.Column[float]:
    return sa.Column(
        name,
        sa.Float,
        sa.CheckConstraint(f"{name} IS NULL OR {name} >= 0", name=f"ck_activity_{name}"),
        nullable=True,
    )


def _count(name: str) -> sa.Column[int]:
    return sa.Column(
        name,
        sa.Integer,
        sa.CheckConstraint(f"{name} IS NULL OR {name} >= 0", name=f"ck_activity_{name}"),
        nullable=True,
    )


def upgrade() -> None:
    op.create_table(
        "activity",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("instance", sa.Text, nullable=True),
        sa.Column("node", sa.Text, nullable=True),
        sa.Column("route", sa.Text, nullable=False),
        sa.Column(
            "status",
            sa.Integer,
            sa.CheckConstraint("status BETWEEN 100 AND 599", name="ck_activity_status"),
            nullable=False,
        ),
        sa.Column(
            "duration",
            sa.Float,
            sa.CheckConstraint("duration >= 0", name="ck_activity_duration"),
            nullable=False,
        ),
        _seconds("ttfb"),
        _seconds("queue_wait"),
        _flag("cold_start"),
        _flag("streamed"),
        _count("prompt_tokens"),
        _count("completion_tokens"),
        _seconds("tokens_per_second"),
        sa.Column("key_id", sa.Integer, nullable=True),
        sa.Column("key_name", sa.Text, nullable=True),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("activity")
