"""Shopper e-mail for reminders, reminder delivery state, and the order-event outbox.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute('ALTER TABLE "order" ADD COLUMN receiver_email text')
    op.execute("ALTER TABLE notification ADD COLUMN detail text")
    op.execute("ALTER TABLE notification ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now()")
    # Written in the same transaction as the change it reports (transactional outbox); the event id
    # is what receivers deduplicate on.
    op.execute(
        """
        CREATE TABLE order_event (
            id uuid PRIMARY KEY,
            order_id uuid NOT NULL REFERENCES "order"(id) ON DELETE CASCADE,
            type text NOT NULL,
            payload jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            delivered_at timestamptz,
            attempts integer NOT NULL DEFAULT 0
        )
        """
    )
    op.execute("CREATE INDEX ix_order_event_undelivered ON order_event(order_id) WHERE delivered_at IS NULL")


def downgrade() -> None:
    op.execute("DROP TABLE order_event")
    op.execute("ALTER TABLE notification DROP COLUMN updated_at")
    op.execute("ALTER TABLE notification DROP COLUMN detail")
    op.execute('ALTER TABLE "order" DROP COLUMN receiver_email')
