"""Fixtures: a real throw-away PostgreSQL cluster (tests/support/postgres.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

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


# The namespace lab and the scripted clients live beside the other DHCP tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dhcp"))
