"""An instance's own loading-progress setting, beside the others of its row.

One nullable INTEGER column on ``instances``: ``loading_progress``, 0 or 1 when the instance says
whether a streamed request waiting for its start gets SSE ``: loading`` comments, NULL
when it leaves that to ``instances.loading_progress``. Every column of the spec's table
stays as it is.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No CHECK, as for 0003's columns: SQLite cannot drop a column that has one, and only
    # llamactl writes it.
    op.add_column("instances", sa.Column("loading_progress", sa.Integer, nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+) leaves every other column, CHECK and index.
    op.drop_column("instances", "loading_progress")
