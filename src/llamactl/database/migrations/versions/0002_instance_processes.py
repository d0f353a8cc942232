"""The backend processes llamactl has running, so that a start after a crash can reap them.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instance_processes",
        sa.Column(
            "instance_name",
            sa.Text,
            sa.ForeignKey("instances.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("pid", sa.Integer, nullable=False),
        # Process start time in clock ticks since boot: tells a leftover from a reused PID.
        sa.Column("start_ticks", sa.Integer, nullable=True),
        sa.Column("started_at", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("instance_processes")
