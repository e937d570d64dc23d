"""A gateway refund asked and not definitively refused: payment.refund_asked_at.

Set before a refund request leaves for the gateway (the desk's request, each refund activity's
call) and cleared only by the gateway's definite refusal. While it is set, the money may already be
on its way back, so the desk refuses `mark-refunded` (REFUND_OUTCOME_UNKNOWN): only the gateway,
asked again under the payment's one refund key, can say how it ended.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE payment ADD COLUMN refund_asked_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE payment DROP COLUMN refund_asked_at")
