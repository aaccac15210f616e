"""Persistence: ORM models, engine factory, data-access functions, migrations."""
