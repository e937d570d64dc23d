"""VNPay 2.1.0 on the wire: dates, the urlencode hash, pipe checksums and the code tables.

vnp_SecureHash = hex(HMAC-SHA512(hashSecret, sorted `key=urlencode(value)` joined by `&`)),
PHP `urlencode` rules; querydr/refund sign their fields joined by `|`. Amounts travel as
VND x 100 and dates as yyyyMMddHHmmss in Asia/Ho_Chi_Minh. See shared/GATEWAYS.md.
Shared by the adapter (gateways.vnpay) and the sandbox.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

from gateways.base import InvalidSignature, PaymentOutcome
from gateways.fields import plain_ascii, signed_text

VNPAY_VERSION = "2.1.0"
VNPAY_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
VNPAY_DATE_FORMAT = "%Y%m%d%H%M%S"
# 07 = money taken but the transaction is flagged as suspicious: not final until reviewed,
# so it stays pending and reconciliation (querydr) settles it.
VNPAY_SUSPICIOUS_OUTCOME = PaymentOutcome.PROCESSING
HASH_KEYS = frozenset({"vnp_SecureHash", "vnp_SecureHashType"})

QUERYDR_SIGNED = (
    "vnp_RequestId", "vnp_Version", "vnp_Command", "vnp_TmnCode", "vnp_TxnRef",
    "vnp_TransactionDate", "vnp_CreateDate", "vnp_IpAddr", "vnp_OrderInfo",
)  # fmt: skip  # a table: the signed fields, in the order the gateway signs them
QUERYDR_ANSWER_SIGNED = (
    "vnp_ResponseId", "vnp_Command", "vnp_ResponseCode", "vnp_Message", "vnp_TmnCode",
    "vnp_TxnRef", "vnp_Amount", "vnp_BankCode", "vnp_PayDate", "vnp_TransactionNo",
    "vnp_TransactionType", "vnp_TransactionStatus", "vnp_OrderInfo", "vnp_PromotionCode",
    "vnp_PromotionAmount",
)  # fmt: skip  # a table: the signed fields, in the order the gateway signs them
REFUND_SIGNED = (
    "vnp_RequestId", "vnp_Version", "vnp_Command", "vnp_TmnCode", "vnp_TransactionType",
    "vnp_TxnRef", "vnp_Amount", "vnp_TransactionNo", "vnp_TransactionDate", "vnp_CreateBy",
    "vnp_CreateDate", "vnp_IpAddr", "vnp_OrderInfo",
)  # fmt: skip  # a table: the signed fields, in the order the gateway signs them
REFUND_ANSWER_SIGNED = QUERYDR_ANSWER_SIGNED[:13]

_RESPONSE_OUTCOMES: dict[str, PaymentOutcome] = {
    "07": VNPAY_SUSPICIOUS_OUTCOME,
    **dict.fromkeys(("09", "10", "12", "13", "51", "65", "75", "79"), PaymentOutcome.FAILED),
    "11": PaymentOutcome.EXPIRED,
    "24": PaymentOutcome.CANCELLED,
    "99": PaymentOutcome.UNKNOWN,  # "unknown error": not a verdict, ask again
}
_STATUS_OUTCOMES: dict[str, PaymentOutcome] = {
    "00": PaymentOutcome.SUCCESS,
    "01": PaymentOutcome.PENDING,  # not completed yet
    "02": PaymentOutcome.FAILED,
    "04": PaymentOutcome.PROCESSING,  # reversed: charged at the bank, not completed at VNPay: review
    # 05/06 refund in progress, 09 refund rejected: the payment itself went through.
    **dict.fromkeys(("05", "06", "09"), PaymentOutcome.SUCCESS),
    "07": VNPAY_SUSPICIOUS_OUTCOME,
}


def vnpay_date(moment: datetime) -> str:
    """yyyyMMddHHmmss in GMT+7, whatever the server's zone; naive datetimes are refused."""
    if moment.tzinfo is None:
        raise ValueError("VNPay dates need a timezone-aware datetime")
    return moment.astimezone(VNPAY_TZ).strftime(VNPAY_DATE_FORMAT)


def parse_vnpay_date(text: str) -> datetime:
    return datetime.strptime(text, VNPAY_DATE_FORMAT).replace(tzinfo=VNPAY_TZ)


def php_urlencode(value: str) -> str:
    """PHP urlencode: quote_plus, except that PHP also encodes `~`."""
    return quote_plus(value, safe="").replace("~", "%7E")


def vnpay_hash_data(params: Mapping[str, Any]) -> str:
    """The sorted, encoded `vnp_*` query string: both what is hashed and what is sent."""
    keys = sorted(k for k in params if k.startswith("vnp_") and k not in HASH_KEYS)
    return "&".join(f"{k}={php_urlencode(signed_text(params[k]))}" for k in keys)


def hmac512(secret: str, data: str) -> str:
    return hmac.new(secret.encode(), data.encode("utf-8"), hashlib.sha512).hexdigest()


def vnpay_secure_hash(params: Mapping[str, Any], secret: str) -> str:
    return hmac512(secret, vnpay_hash_data(params))


def vnpay_pipe_hash(values: Mapping[str, Any], fields: Sequence[str], secret: str) -> str:
    """querydr/refund checksum: the listed fields' raw values joined by `|` (missing -> "")."""
    return hmac512(secret, "|".join(signed_text(values.get(f)) for f in fields))


def same_hash(expected: str, received: Any) -> bool:
    return isinstance(received, str) and hmac.compare_digest(expected.encode(), received.lower().encode())


# querydr's view of refunds (docs/GATEWAYS.md): vnp_TransactionType 02/03 = refunded in full / in part;
# vnp_TransactionStatus 05/06 = a refund in progress, 09 = the refund was rejected.
REFUND_TYPES = frozenset({"02", "03"})
REFUND_IN_PROGRESS = frozenset({"05", "06"})
REFUND_REJECTED = "09"


def vnpay_status_outcome(transaction_status: str) -> PaymentOutcome:
    """An unknown status is not a verdict."""
    return _STATUS_OUTCOMES.get(transaction_status, PaymentOutcome.UNKNOWN)


def vnpay_outcome(response_code: str, transaction_status: str) -> PaymentOutcome:
    """IPN/return: success needs both vnp_ResponseCode=00 and vnp_TransactionStatus=00."""
    if response_code != "00":
        return _RESPONSE_OUTCOMES.get(response_code, PaymentOutcome.UNKNOWN)
    if transaction_status == "00":
        return PaymentOutcome.SUCCESS
    status = vnpay_status_outcome(transaction_status)
    return PaymentOutcome.PENDING if status is PaymentOutcome.SUCCESS else status


def vnpay_order_info(text: str, fallback: str = "Thanh toan") -> str:
    return plain_ascii(text, max_len=255) or fallback


def vnd_from_x100(amount_x100: int) -> int:
    if amount_x100 < 0 or amount_x100 % 100:
        raise InvalidSignature(f"VNPay amount {amount_x100} is not whole VND x 100")
    return amount_x100 // 100
