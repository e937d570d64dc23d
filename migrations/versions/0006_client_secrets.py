"""Order-scoped client secrets: one row per minted secret (never the secret), so a secret can be
revoked before it expires.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE client_secret (
            id uuid PRIMARY KEY,
            order_id uuid NOT NULL REFERENCES "order"(id) ON DELETE CASCADE,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            revoked_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX ix_client_secret_order ON client_secret(order_id)")


def downgrade() -> None:
    op.execute("DROP TABLE client_secret")
