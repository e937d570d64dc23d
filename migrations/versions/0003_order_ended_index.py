"""Index ended orders that are not archived, by end time.

Two readers range-scan `"order".ended_at` and nothing indexed it: the daily archive
(`NOT archived AND ended_at < cutoff`) and `/metrics`' 24-hour histograms
(`NOT archived AND ended_at >= now() - 24 h`). Partial on `NOT archived`, so the index stays the
size of the last ~30 days however many years of archived orders pile up behind it.

Revision ID: 0003
Revises: 0002 (0002_notifications_and_events.py, written alongside; this one goes after it)
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute('CREATE INDEX ix_order_unarchived_ended ON "order"(ended_at) WHERE NOT archived')


def downgrade() -> None:
    op.execute("DROP INDEX ix_order_unarchived_ended")
