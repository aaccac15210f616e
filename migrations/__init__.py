"""Alembic migrations for the bot's database (packaged so an installed ``nameorigin db upgrade`` finds them)."""
