"""Guesses, corrections and model versions.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "guesses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("raw_input", sa.Text(), nullable=False),
        sa.Column("surname", sa.String(length=64), nullable=False),
        sa.Column("top_language", sa.String(length=32), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("top_languages", sa.String(length=120), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guesses")),
    )
    with op.batch_alter_table("guesses") as batch:
        batch.create_index(batch.f("ix_guesses_user_id"), ["user_id"])
        batch.create_index(batch.f("ix_guesses_surname"), ["surname"])

    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("guess_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("language", sa.String(length=32), nullable=False),
        sa.Column("confirmed", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["guess_id"], ["guesses.id"], name=op.f("fk_corrections_guess_id_guesses"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corrections")),
        sa.UniqueConstraint("guess_id", "user_id", name="uq_corrections_guess_user"),
    )
    with op.batch_alter_table("corrections") as batch:
        batch.create_index(batch.f("ix_corrections_guess_id"), ["guess_id"])
        batch.create_index(batch.f("ix_corrections_user_id"), ["user_id"])

    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("checkpoint_path", sa.Text(), nullable=False),
        sa.Column("parent_version", sa.String(length=64), nullable=True),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("version", name=op.f("uq_model_versions_version")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("model_versions")
    with op.batch_alter_table("corrections") as batch:
        batch.drop_index(batch.f("ix_corrections_user_id"))
        batch.drop_index(batch.f("ix_corrections_guess_id"))
    op.drop_table("corrections")
    with op.batch_alter_table("guesses") as batch:
        batch.drop_index(batch.f("ix_guesses_surname"))
        batch.drop_index(batch.f("ix_guesses_user_id"))
    op.drop_table("guesses")
