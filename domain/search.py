"""Search attributes operators filter on in the Temporal Web UI (`make dev` registers them)."""

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
ORDER_CODE = SearchAttributeKey.for_int("OrderCode")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
GATEWAY = SearchAttributeKey.for_keyword("Gateway")
PAYMENT_DEADLINE = SearchAttributeKey.for_datetime("PaymentDeadline")
GRAND_TOTAL = SearchAttributeKey.for_int("GrandTotal")
# Set on late-payment workflows: received | accepted | refund_required | refunded | needs_review.
LATE_PAYMENT = SearchAttributeKey.for_keyword("LatePayment")

ALL = (ORDER_STATUS, ORDER_CODE, CUSTOMER_ID, GATEWAY, PAYMENT_DEADLINE, GRAND_TOTAL, LATE_PAYMENT)


def at_start(customer_id: str, gateway: str) -> TypedSearchAttributes:
    """What the API knows when it starts an order's workflow, sent with the start request; the
    workflow adds the rest (status, code, total, deadline) in one upsert once its first step has
    made the order. OrderStatus waits for that too: a cart refused at checkout never becomes an
    order and must not be listed as `pending_payment`."""
    return TypedSearchAttributes(
        [SearchAttributePair(CUSTOMER_ID, customer_id), SearchAttributePair(GATEWAY, gateway)]
    )
