"""ORM tables: every guess, every user's correction of it, and model versions."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Named constraints make migrations reproducible, and SQLite batch mode needs the names.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Timezone-aware now, for column defaults."""
    return datetime.now(UTC)


class Base(AsyncAttrs, DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Guess(Base):
    """One answer the bot gave."""

    __tablename__ = "guesses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)  # the user's message that asked
    raw_input: Mapped[str] = mapped_column(Text)
    surname: Mapped[str] = mapped_column(String(64), index=True)  # normalized ASCII form
    top_language: Mapped[str] = mapped_column(String(32))
    probability: Mapped[float] = mapped_column(Float)
    top_languages: Mapped[str] = mapped_column(String(120))  # comma-separated top 3, for the keyboard
    model_version: Mapped[str] = mapped_column(String(64))
    # Indexed for GUESS_RETENTION_DAYS, which deletes the oldest guesses without a verdict.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)

    corrections: Mapped[list[Correction]] = relationship(back_populates="guess")


class Correction(Base):
    """A user's verdict on a guess: the language they chose (equal to the guess when confirming)."""

    __tablename__ = "corrections"
    __table_args__ = (UniqueConstraint("guess_id", "user_id", name="uq_corrections_guess_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guess_id: Mapped[int] = mapped_column(ForeignKey("guesses.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    language: Mapped[str] = mapped_column(String(32))
    confirmed: Mapped[bool] = mapped_column(Boolean)  # the chosen language equals the guess
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    guess: Mapped[Guess] = relationship(back_populates="corrections")


class ModelVersion(Base):
    """A GRU the bot has known: the first live one, and every fine-tune run, promoted or rejected.

    Exactly one row is active: the model that answers. Rejected runs keep their figures but no checkpoint.
    """

    __tablename__ = "model_versions"
    # At most one live model, enforced by the database even with several bot processes.
    __table_args__ = (
        Index(
            "uq_model_versions_active",
            "active",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    checkpoint_path: Mapped[str | None] = mapped_column(Text)  # relative to MODEL_DIR, or shipped:<kind>
    parent_version: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    decision: Mapped[str | None] = mapped_column(String(16))  # one of the names in bot.db.versions
    reason: Mapped[str | None] = mapped_column(Text)  # the gate's explanation
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # when its fine-tune began
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
