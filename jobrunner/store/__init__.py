"""The only package that writes the database: models, migrations, transitions, queries."""

from jobrunner.store.db import Store, open_store

__all__ = ["Store", "open_store"]
