"""Why an instance last failed, kept across restarts of llamactl.

Two nullable columns on ``instances``: ``failure_reason`` (what ended the backend, such as
"exited with status 1") and ``failure_output`` (its last output lines, a JSON array of
strings). Both are NULL while there is no failure. Every column of the spec's table stays
as it is.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("instances", sa.Column("failure_reason", sa.Text, nullable=True))
    op.add_column("instances", sa.Column("failure_output", sa.Text, nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+) leaves every other column, CHECK and index.
    op.drop_column("instances", "failure_output")
    op.drop_column("instances", "failure_reason")
