"""The attempt-status sets of domain/statuses.py: how they relate, and the SQL built from them."""

from __future__ import annotations

from pathlib import Path

from domain.statuses import (
    HOLDS_MONEY,
    MAY_TAKE_MONEY,
    MONEY_AT_REST,
    NEEDS_PERSON,
    OPERATOR_SETTLED,
    SETTLED_MONEY,
)
from store.status_sql import sql_in
from store.tables import Payment

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations" / "versions"


def test_the_sets_nest_as_their_names_say() -> None:
    assert MONEY_AT_REST < SETTLED_MONEY < HOLDS_MONEY
    assert OPERATOR_SETTLED < SETTLED_MONEY
    assert NEEDS_PERSON < HOLDS_MONEY
    assert SETTLED_MONEY | NEEDS_PERSON == HOLDS_MONEY
    assert not MAY_TAKE_MONEY & SETTLED_MONEY  # a link whose money has a home is never asked or cancelled


def test_sql_lists_are_stable_and_match_the_migrated_index() -> None:
    assert sql_in(SETTLED_MONEY) == "('success', 'refund_required', 'refunded')"
    (index,) = [i for i in Payment.__table__.indexes if i.name == "ix_payment_needs_person"]
    predicate = str(index.dialect_options["postgresql"]["where"])
    assert f"WHERE {predicate}" in (MIGRATIONS / "0004_critical_path.py").read_text()
