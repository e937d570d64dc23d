"""Status sets written into raw SQL, from the one vocabulary in domain/statuses.py."""

from __future__ import annotations

from domain.statuses import AttemptStatus, values_of


def sql_in(statuses: frozenset[AttemptStatus]) -> str:
    """`('a', 'b')` for `status IN ...`: the enum's own values (never input), in the enum's order."""
    return "(" + ", ".join(f"'{value}'" for value in values_of(statuses)) + ")"
