"""Initial schema: catalog, frozen orders, sessions, payment attempts, notification inbox.

Revision ID: 0001
"""

import re

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ORDER_STATUSES = "'pending_payment','paid','cancelled','expired','failed'"
SESSION_STATUSES = "'active','completed','expired','cancelled'"
ATTEMPT_STATUSES = (
    "'pending','success','failed','cancelled','expired','system_error','refund_required','refunded'"
)


def _run(script: str) -> None:
    """asyncpg prepares each statement, so a script runs one statement at a time. Statements end
    with `;` at the end of a line; the plpgsql body keeps its own `;` mid-line or after END."""
    for statement in re.split(r";\s*\n(?=\s*(?:CREATE|DROP|ALTER|--|$))", script):
        lines = [ln for ln in statement.strip().splitlines() if not ln.strip().startswith("--")]
        if "\n".join(lines).strip():
            op.execute("\n".join(lines))


def upgrade() -> None:
    _run(
        """
        CREATE TABLE product (
            id uuid PRIMARY KEY,
            name text NOT NULL CHECK (length(name) > 0),
            description text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE product_variant (
            id uuid PRIMARY KEY,
            product_id uuid NOT NULL REFERENCES product(id),
            sku text NOT NULL UNIQUE,
            name text NOT NULL,
            price bigint NOT NULL CHECK (price >= 0),
            stock_quantity integer NOT NULL CHECK (stock_quantity >= 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ix_product_variant_product ON product_variant(product_id);
        """
    )
    _run(
        f"""
        CREATE TABLE "order" (
            id uuid PRIMARY KEY,
            order_code integer NOT NULL UNIQUE CHECK (order_code BETWEEN 100000000 AND 999999999),
            customer_id text NOT NULL,
            status text NOT NULL CHECK (status IN ({ORDER_STATUSES})),
            order_type text NOT NULL,
            currency_code char(3) NOT NULL DEFAULT 'VND',
            subtotal_amount bigint NOT NULL CHECK (subtotal_amount >= 0),
            discount_amount bigint NOT NULL DEFAULT 0 CHECK (discount_amount >= 0),
            shipping_fee bigint NOT NULL DEFAULT 0 CHECK (shipping_fee >= 0),
            grand_total bigint NOT NULL CHECK (grand_total >= 0),
            receiver_name text NOT NULL,
            receiver_phone text NOT NULL,
            receiver_address text NOT NULL,
            request_hash text NOT NULL,
            end_reason text,
            late_payment boolean NOT NULL DEFAULT false,
            archived boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            ended_at timestamptz,
            CHECK (grand_total = subtotal_amount - discount_amount + shipping_fee)
        );
        CREATE INDEX ix_order_customer_created ON "order"(customer_id, created_at DESC);
        CREATE INDEX ix_order_status_created ON "order"(status, created_at DESC);
        CREATE INDEX ix_order_created ON "order"(created_at DESC);

        CREATE TABLE order_item (
            id uuid PRIMARY KEY,
            order_id uuid NOT NULL REFERENCES "order"(id) ON DELETE CASCADE,
            product_id uuid NOT NULL REFERENCES product(id),
            variant_id uuid NOT NULL REFERENCES product_variant(id),
            product_name text NOT NULL,
            variant_sku text NOT NULL,
            variant_name text NOT NULL,
            quantity integer NOT NULL CHECK (quantity > 0),
            unit_price bigint NOT NULL CHECK (unit_price >= 0),
            sub_total_amount bigint NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CHECK (sub_total_amount = unit_price * quantity),
            UNIQUE (order_id, variant_id)
        );

        -- Order items are a frozen checkout snapshot. Adjustments are new records.
        CREATE FUNCTION order_item_is_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'order_item rows are immutable (order %)', OLD.order_id
                USING ERRCODE = 'restrict_violation';
        END $$;
        CREATE TRIGGER order_item_no_update BEFORE UPDATE ON order_item
            FOR EACH ROW EXECUTE FUNCTION order_item_is_immutable();

        CREATE TABLE order_session (
            id uuid PRIMARY KEY,
            order_id uuid NOT NULL UNIQUE REFERENCES "order"(id) ON DELETE CASCADE,
            status text NOT NULL DEFAULT 'active' CHECK (status IN ({SESSION_STATUSES})),
            session_duration_minutes numeric(10,4) NOT NULL CHECK (session_duration_minutes > 0),
            expires_at timestamptz NOT NULL,
            started_at timestamptz NOT NULL,
            payment_attempts integer NOT NULL DEFAULT 0 CHECK (payment_attempts >= 0),
            max_payment_attempts integer NOT NULL DEFAULT 3 CHECK (max_payment_attempts >= 0),
            last_payment_attempt timestamptz,
            metadata jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ix_order_session_status_expires ON order_session(status, expires_at);
        CREATE INDEX ix_order_session_expires ON order_session(expires_at);

        CREATE TABLE payment (
            id uuid PRIMARY KEY,
            order_id uuid NOT NULL REFERENCES "order"(id) ON DELETE CASCADE,
            attempt_no integer NOT NULL CHECK (attempt_no >= 0),
            gateway text NOT NULL,
            gateway_order_id text NOT NULL,
            request_id text NOT NULL,
            amount bigint NOT NULL CHECK (amount >= 0),
            status text NOT NULL DEFAULT 'pending' CHECK (status IN ({ATTEMPT_STATUSES})),
            result_code text,
            transaction_id text,
            payment_url text NOT NULL,
            expires_at timestamptz NOT NULL,
            raw_notification jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (order_id, attempt_no),
            UNIQUE (gateway, gateway_order_id)
        );
        CREATE INDEX ix_payment_status ON payment(status) WHERE status IN ('refund_required');

        CREATE TABLE payment_notification (
            id uuid PRIMARY KEY,
            order_id uuid NOT NULL REFERENCES "order"(id) ON DELETE CASCADE,
            gateway text NOT NULL,
            gateway_order_id text NOT NULL,
            dedupe_key text NOT NULL UNIQUE,
            outcome text NOT NULL,
            result_code text NOT NULL,
            amount bigint,
            transaction_id text,
            payload jsonb NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            delivered_at timestamptz
        );
        CREATE INDEX ix_payment_notification_undelivered ON payment_notification(order_id)
            WHERE delivered_at IS NULL;

        CREATE TABLE notification (
            id uuid PRIMARY KEY,
            order_id uuid NOT NULL REFERENCES "order"(id) ON DELETE CASCADE,
            kind text NOT NULL,
            channel text NOT NULL,
            status text NOT NULL DEFAULT 'sent',
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (order_id, kind, channel)
        );
        """
    )


def downgrade() -> None:
    _run(
        """
        DROP TABLE notification, payment_notification, payment, order_session, order_item,
            "order", product_variant, product CASCADE;
        DROP FUNCTION order_item_is_immutable();
        """
    )
