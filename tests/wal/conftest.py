"""The PostgreSQL fixtures of tests/wal (tests/wal/pg.py)."""

from tests.wal.pg import archiving, pg_root  # noqa: F401
