"""Merge point of 0007 (surplus money) and 0008 (refund asked), so that the chaos branch runs with
both. Only for the branches merged into h4-chaos: the lead rechains 0007/0008 at merge and drops
this file.

Revision ID: 0009
Revises: 0007, 0008
"""

revision = "0009"
down_revision = ("0007", "0008")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
