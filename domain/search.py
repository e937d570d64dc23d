"""Search attributes operators filter on in the Temporal Web UI (`make dev` registers them)."""

from temporalio.common import SearchAttributeKey

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
ORDER_CODE = SearchAttributeKey.for_int("OrderCode")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
GATEWAY = SearchAttributeKey.for_keyword("Gateway")
PAYMENT_DEADLINE = SearchAttributeKey.for_datetime("PaymentDeadline")
GRAND_TOTAL = SearchAttributeKey.for_int("GrandTotal")
# Set on late-payment workflows: received | accepted | refund_required | refunded | needs_review.
LATE_PAYMENT = SearchAttributeKey.for_keyword("LatePayment")

ALL = (ORDER_STATUS, ORDER_CODE, CUSTOMER_ID, GATEWAY, PAYMENT_DEADLINE, GRAND_TOTAL, LATE_PAYMENT)
