"""Money beside an attempt: a PayOS transfer beyond a paid link's price (or one that arrived after an
operator settled the attempt's money) is kept on a review row of its own.

- payment.surplus_of: the attempt a surplus row stands beside (NULL for an attempt itself). A
  surplus row shares its attempt's order, attempt_no, gateway and gateway order id, carries the
  transfer's reference as transaction_id, and is `needs_review` with amount = received_amount = the
  surplus, so the money desk lists and returns it like any other.
- The attempt's unique keys (order + attempt_no, gateway + gateway order id) hold for attempts only;
  a transfer has at most one surplus row.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE payment ADD COLUMN surplus_of uuid REFERENCES payment(id) ON DELETE CASCADE")
    op.execute("ALTER TABLE payment DROP CONSTRAINT payment_order_id_attempt_no_key")
    op.execute("ALTER TABLE payment DROP CONSTRAINT payment_gateway_gateway_order_id_key")
    op.execute(
        "CREATE UNIQUE INDEX payment_order_id_attempt_no_key ON payment(order_id, attempt_no) WHERE surplus_of IS NULL"
    )
    op.execute(
        "CREATE UNIQUE INDEX payment_gateway_gateway_order_id_key ON payment(gateway, gateway_order_id) "
        "WHERE surplus_of IS NULL"
    )
    op.execute(
        "CREATE UNIQUE INDEX ix_payment_surplus_transfer ON payment(gateway, gateway_order_id, transaction_id) "
        "WHERE surplus_of IS NOT NULL"
    )
    # An order's payments, surplus rows included: the partial keys cannot serve that lookup.
    op.execute("CREATE INDEX ix_payment_order ON payment(order_id, attempt_no)")


def downgrade() -> None:
    op.execute("DELETE FROM payment WHERE surplus_of IS NOT NULL")
    op.execute("DROP INDEX ix_payment_order")
    op.execute("DROP INDEX ix_payment_surplus_transfer")
    op.execute("DROP INDEX payment_gateway_gateway_order_id_key")
    op.execute("DROP INDEX payment_order_id_attempt_no_key")
    op.execute(
        "ALTER TABLE payment ADD CONSTRAINT payment_order_id_attempt_no_key UNIQUE (order_id, attempt_no)"
    )
    op.execute(
        "ALTER TABLE payment ADD CONSTRAINT payment_gateway_gateway_order_id_key UNIQUE (gateway, gateway_order_id)"
    )
    op.execute("ALTER TABLE payment DROP COLUMN surplus_of")
