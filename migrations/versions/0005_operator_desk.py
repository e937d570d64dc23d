"""The operators' desk: variants that can be withdrawn, what a refund said, the audit trail.

- product_variant.active: a withdrawn variant takes no new orders (VARIANT_UNAVAILABLE at the
  reservation); orders already placed keep their items.
- payment.refund_note: what the last refund attempt said (the gateway's refusal, an unreachable
  gateway), or how an operator sent the money back outside the gateway.
- audit_log: every operator action (who, when, what, the note), written in the transaction that
  makes the change. Append-only in Postgres itself: UPDATE, DELETE and TRUNCATE are refused.
  No foreign keys on purpose: the trail outlives what it describes and never blocks a change.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE product_variant ADD COLUMN active boolean NOT NULL DEFAULT true")
    op.execute("ALTER TABLE payment ADD COLUMN refund_note text")
    op.execute(
        """
        CREATE TABLE audit_log (
            id uuid PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            actor text NOT NULL CHECK (length(actor) > 0),
            action text NOT NULL,
            order_id uuid,
            payment_id uuid,
            variant_id uuid,
            notification_id uuid,
            note text NOT NULL DEFAULT '',
            detail jsonb NOT NULL DEFAULT '{}'
        )
        """
    )
    op.execute("CREATE INDEX ix_audit_log_at ON audit_log(at DESC)")
    op.execute("CREATE INDEX ix_audit_log_order ON audit_log(order_id, at DESC) WHERE order_id IS NOT NULL")
    op.execute(
        "CREATE INDEX ix_audit_log_payment ON audit_log(payment_id, at DESC) WHERE payment_id IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX ix_audit_log_variant ON audit_log(variant_id, at DESC) WHERE variant_id IS NOT NULL"
    )
    op.execute(
        """
        CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP
                USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP TABLE audit_log")
    op.execute("DROP FUNCTION audit_log_is_append_only()")
    op.execute("ALTER TABLE payment DROP COLUMN refund_note")
    op.execute("ALTER TABLE product_variant DROP COLUMN active")
