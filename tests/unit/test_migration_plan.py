"""migrations.plan and load_migrations: pure decisions about what to apply."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from foreman_rt.errors import ConfigurationError
from foreman_rt.migrations import Applied, Migration, load_migrations, plan

NOW = datetime(2025, 1, 1, tzinfo=UTC)
ONE = Migration(1, "init", "CREATE TABLE a ();")
TWO = Migration(2, "more", "CREATE TABLE b ();")


def applied(migration: Migration, checksum: str | None = None) -> Applied:
    return Applied(migration.version, migration.name, checksum or migration.checksum, NOW)


def test_nothing_applied_plans_everything_in_order() -> None:
    assert plan([], [ONE, TWO]) == [ONE, TWO]


def test_applied_migrations_are_skipped() -> None:
    assert plan([applied(ONE)], [ONE, TWO]) == [TWO]
    assert plan([applied(ONE), applied(TWO)], [ONE, TWO]) == []


def test_changed_checksum_raises_migration_changed() -> None:
    with pytest.raises(ConfigurationError) as info:
        plan([applied(ONE, checksum="x")], [ONE, TWO])
    assert info.value.code == "migration_changed"
    assert "0001_init" in info.value.message


def test_unknown_applied_migration_raises_migration_unknown() -> None:
    with pytest.raises(ConfigurationError) as info:
        plan([applied(ONE), applied(TWO)], [ONE])
    assert info.value.code == "migration_unknown"
    assert "0002_more" in info.value.message


def test_checksum_is_sha256_of_the_text() -> None:
    assert len(ONE.checksum) == 64
    assert ONE.checksum != Migration(1, "init", ONE.sql + " ").checksum


def test_shipped_migrations_are_numbered_from_one_without_gaps() -> None:
    found = load_migrations()
    assert found, "no migration files found"
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert found[0].name == "init"
    assert "CREATE TABLE jobs" in found[0].sql
