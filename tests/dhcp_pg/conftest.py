"""Fixtures: a real throw-away PostgreSQL cluster (tests/support/postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pgtest import Stores

from support.postgres import pg_cluster, pg_database

__all__ = ["pg_cluster", "pg_database", "stores"]


@pytest.fixture
def stores(pg_database: str) -> Iterator[Stores]:
    """Opens PgStore instances on the test's fresh database; closes them afterwards."""
    made = Stores(pg_database)
    try:
        yield made
    finally:
        made.close()
