"""Money that needs a person, orphan verdicts, the order-event relay's schedule, effect failures.

- payment: status `needs_review` (verified money that cannot pay the order) with `review_reason`
  and `received_amount`; `cancel_failures` / `cancel_error` for links the gateway would not cancel.
- payment_notification: `order_id` may be NULL (a verified verdict for no attempt of ours is kept,
  not dropped); indexed by order for the reconciliation's read, and by arrival while undelivered.
- order_event: the relay's schedule (`next_attempt_at`, capped backoff) and its last error.
- notification: how often a reminder channel failed.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ATTEMPT_STATUSES = (
    "'pending','success','failed','cancelled','expired','system_error','refund_required','refunded',"
    "'needs_review'"
)
OLD_ATTEMPT_STATUSES = (
    "'pending','success','failed','cancelled','expired','system_error','refund_required','refunded'"
)


def upgrade() -> None:
    op.execute("ALTER TABLE payment DROP CONSTRAINT payment_status_check")
    op.execute(
        f"ALTER TABLE payment ADD CONSTRAINT payment_status_check CHECK (status IN ({ATTEMPT_STATUSES}))"
    )
    op.execute("ALTER TABLE payment ADD COLUMN review_reason text")
    op.execute("ALTER TABLE payment ADD COLUMN received_amount bigint")
    op.execute("ALTER TABLE payment ADD COLUMN cancel_failures integer NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE payment ADD COLUMN cancel_error text")
    op.execute("DROP INDEX ix_payment_status")
    op.execute(
        "CREATE INDEX ix_payment_needs_person ON payment(status) WHERE status IN ('refund_required', 'needs_review')"
    )

    op.execute("ALTER TABLE payment_notification ALTER COLUMN order_id DROP NOT NULL")
    # The reconciliation reads every verdict of one order (delivered or not): a full index, which
    # also replaces the partial one on undelivered rows.
    op.execute("DROP INDEX ix_payment_notification_undelivered")
    op.execute("CREATE INDEX ix_payment_notification_order ON payment_notification(order_id)")
    op.execute(
        "CREATE INDEX ix_payment_notification_undelivered ON payment_notification(received_at) "
        "WHERE delivered_at IS NULL"
    )

    op.execute("ALTER TABLE order_event ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now()")
    op.execute("ALTER TABLE order_event ADD COLUMN last_error text")
    op.execute("CREATE INDEX ix_order_event_due ON order_event(next_attempt_at) WHERE delivered_at IS NULL")

    op.execute("ALTER TABLE notification ADD COLUMN failures integer NOT NULL DEFAULT 0")


def downgrade() -> None:
    op.execute("ALTER TABLE notification DROP COLUMN failures")
    op.execute("DROP INDEX ix_order_event_due")
    op.execute("ALTER TABLE order_event DROP COLUMN last_error")
    op.execute("ALTER TABLE order_event DROP COLUMN next_attempt_at")
    op.execute("DROP INDEX ix_payment_notification_undelivered")
    op.execute("DROP INDEX ix_payment_notification_order")
    op.execute("DELETE FROM payment_notification WHERE order_id IS NULL")
    op.execute("ALTER TABLE payment_notification ALTER COLUMN order_id SET NOT NULL")
    op.execute(
        "CREATE INDEX ix_payment_notification_undelivered ON payment_notification(order_id) WHERE delivered_at IS NULL"
    )
    op.execute("DROP INDEX ix_payment_needs_person")
    op.execute("CREATE INDEX ix_payment_status ON payment(status) WHERE status IN ('refund_required')")
    op.execute("UPDATE payment SET status = 'refund_required' WHERE status = 'needs_review'")
    op.execute("ALTER TABLE payment DROP COLUMN cancel_error")
    op.execute("ALTER TABLE payment DROP COLUMN cancel_failures")
    op.execute("ALTER TABLE payment DROP COLUMN received_amount")
    op.execute("ALTER TABLE payment DROP COLUMN review_reason")
    op.execute("ALTER TABLE payment DROP CONSTRAINT payment_status_check")
    op.execute(
        f"ALTER TABLE payment ADD CONSTRAINT payment_status_check CHECK (status IN ({OLD_ATTEMPT_STATUSES}))"
    )
