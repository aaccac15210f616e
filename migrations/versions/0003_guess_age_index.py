"""An index on guesses.created_at, for GUESS_RETENTION_DAYS's deletion of old guesses.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("guesses") as batch:
        batch.create_index(batch.f("ix_guesses_created_at"), ["created_at"])


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("guesses") as batch:
        batch.drop_index(batch.f("ix_guesses_created_at"))
