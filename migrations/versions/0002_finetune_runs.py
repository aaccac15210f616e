"""Fine-tune runs in model_versions: the gate's reason, the start time, no checkpoint for rejected runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch.alter_column("checkpoint_path", existing_type=sa.Text(), nullable=True)
        batch.create_index(
            "uq_model_versions_active",
            ["active"],
            unique=True,
            sqlite_where=sa.text("active"),
            postgresql_where=sa.text("active"),
        )


def downgrade() -> None:
    """Revert this revision."""
    # Rejected runs, and promoted ones whose checkpoints MODEL_KEEP_VERSIONS deleted, have no checkpoint; the old
    # schema cannot hold them, so they are dropped on the way down.
    op.execute("DELETE FROM model_versions WHERE checkpoint_path IS NULL")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_index("uq_model_versions_active")
        batch.alter_column("checkpoint_path", existing_type=sa.Text(), nullable=False)
        batch.drop_column("started_at")
        batch.drop_column("reason")
