"""Migrations for the dev stack and the tests: the product's own entry point (infra/migrate.py)."""

from __future__ import annotations

from infra.migrate import upgrade

__all__ = ["upgrade"]
