"""Shopper-facing order routes: create, list, detail, session countdown, retry, cancel, and the
order's client secret (minted and revoked with a JWT; detail, session, retry and cancel also take
the secret itself, see api/client_secrets.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from api import client_secrets
from api.audit import audit_entry
from api.deps import (
    ConnDep,
    CurrentUser,
    OrderCaller,
    PageNumber,
    PageSize,
    SettingsDep,
    TemporalDep,
    db_conn,
)
from api.errors import ApiError, error_responses, ok
from api.order_commands import order_input, start_order, update_order
from api.read import find_order, list_orders, order_detail, order_from_creation, session_out
from api.schemas import (
    AttemptStatusName,
    CancelIn,
    Envelope,
    OrderCreate,
    OrderOut,
    OrderStatusName,
    OrderSummary,
    Out,
    Page,
    RetryIn,
    RetryOut,
    SessionOut,
)
from domain.ids import order_id_for
from domain.messages import CancelRequest, RetryRequest
from domain.operator_actions import OperatorAction
from workflows.order import OrderWorkflow

router = APIRouter(prefix="/orders", tags=["orders"])

CREATE_ERRORS = {
    "OUT_OF_STOCK": 409, "VARIANT_UNAVAILABLE": 409, "VARIANT_NOT_FOUND": 404, "ORDER_EXISTS": 409,
    "AMOUNT_OUT_OF_RANGE": 422,
}  # fmt: skip


@router.post(
    "",
    status_code=201,
    response_model=Envelope[OrderOut],
    responses={
        200: {"model": Envelope[OrderOut], "description": "Idempotent replay: the order this key made"},
        **error_responses(403, 404, 409, 502),
    },
)
async def create_order(
    body: OrderCreate,
    request: Request,
    user: CurrentUser,
    settings: SettingsDep,
    client: TemporalDep,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> JSONResponse:
    order_id = order_id_for(user.id, idempotency_key)
    inp = order_input(settings, user, body, order_id, request.client.host if request.client else "127.0.0.1")
    # No pooled connection is held while the workflow works: under load that wait is most of a
    # create, and holding one would cap concurrent creates at the pool's size.
    if idempotency_key is not None:
        async with db_conn(request) as conn:
            replay = await _replay(conn, order_id, inp.request_hash, user)
        if replay is not None:
            return replay
    creation = await start_order(client, settings, inp)
    if creation.request_hash and creation.request_hash != inp.request_hash:
        # A concurrent create with this key and another body started the workflow first.
        raise _key_reused()
    if creation.error:
        raise ApiError(CREATE_ERRORS.get(creation.error, 409), creation.error, creation.message)
    detail = order_from_creation(inp, creation)  # no read back: the workflow answered once it was written
    _refuse_if_no_link(detail)
    return ok(detail, "Đơn hàng đã được tạo ở trạng thái PENDING, đang xử lý thanh toán", 201)


def _key_reused() -> ApiError:
    return ApiError(422, "IDEMPOTENCY_KEY_REUSED", "Idempotency-Key was used with a different request body")


def _refuse_if_no_link(detail: OrderOut) -> None:
    """An order that ended before it got a payment link is answered as the failure it is, on the
    first request and on every replay of its key alike."""
    if detail.status == "failed" and detail.end_reason == "payment_link_unavailable":
        raise ApiError(502, "PAYMENT_GATEWAY_ERROR", f"No payment link could be made; order {detail.order_code} failed")


async def _replay(conn: ConnDep, order_id: str, req_hash: str, user: CurrentUser) -> JSONResponse | None:
    try:
        row = await find_order(conn, order_id, user)
    except ApiError:
        return None
    if row.request_hash != req_hash:
        raise _key_reused()
    detail = await order_detail(conn, row)
    _refuse_if_no_link(detail)
    return ok(detail, "Order already created (idempotent replay)", 200)


@router.get("", response_model=Envelope[Page[OrderSummary]], responses=error_responses(403))
async def get_orders(
    user: CurrentUser,
    conn: ConnDep,
    page: PageNumber = 1,
    size: PageSize = 20,
    status: OrderStatusName | None = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    customer_id: Annotated[str | None, Query(alias="customerId", max_length=128)] = None,
    late_payment: Annotated[bool | None, Query(alias="latePayment")] = None,
    payment_status: Annotated[AttemptStatusName | None, Query(alias="paymentStatus")] = None,
) -> JSONResponse:
    if customer_id is not None and not user.is_admin and customer_id != user.id:
        raise ApiError(403, "FORBIDDEN", "Customers can only list their own orders")
    result = await list_orders(
        conn,
        user,
        page=page,
        size=size,
        status=status,
        date_from=from_,
        date_to=to,
        customer_id=customer_id,
        late_payment=late_payment,
        payment_status=payment_status,
    )
    return ok(result)


@router.get("/{ref}", response_model=Envelope[OrderOut], responses=error_responses(404))
async def get_order(ref: str, user: OrderCaller, conn: ConnDep) -> JSONResponse:
    return ok(await order_detail(conn, await find_order(conn, ref, user)))


@router.get("/{ref}/session", response_model=Envelope[SessionOut], responses=error_responses(404))
async def get_session(ref: str, user: OrderCaller, conn: ConnDep) -> JSONResponse:
    return ok(session_out(await find_order(conn, ref, user)))


@router.post(
    "/{ref}/retry-payment", response_model=Envelope[RetryOut], responses=error_responses(400, 404, 409, 502)
)
async def retry_payment(
    ref: str, user: OrderCaller, conn: ConnDep, client: TemporalDep, body: RetryIn | None = None
) -> JSONResponse:
    gateway = body.gateway if body else None
    row, result = await update_order(
        conn, client, ref, user, "retry",
        lambda order: order.execute_update(OrderWorkflow.retry_payment, RetryRequest(gateway=gateway)),
    )  # fmt: skip
    out = RetryOut(
        order_id=row.id,
        payment_attempts=result.payment_attempts,
        max_payment_attempts=result.max_payment_attempts,
        remaining_attempts=result.remaining_attempts,
        payment_url=result.payment_url,
        gateway=result.gateway,
    )
    return ok(out, "Đang xử lý thanh toán lại")


@router.post("/{ref}/cancel", response_model=Envelope[OrderOut], responses=error_responses(404, 409))
async def cancel_order(
    ref: str, user: OrderCaller, conn: ConnDep, client: TemporalDep, body: CancelIn | None = None
) -> JSONResponse:
    reason = body.reason if body else ""
    # An admin's cancel is an operator action: audited with the transition (in its transaction).
    entry = audit_entry(user, OperatorAction.ORDER_CANCEL, reason) if user.is_admin else None
    cancel = CancelRequest(reason=reason, by="admin" if user.is_admin else "customer", audit=entry)
    row, _ = await update_order(
        conn, client, ref, user, "cancel", lambda order: order.execute_update(OrderWorkflow.cancel, cancel)
    )
    return ok(await order_detail(conn, row), "Hủy đơn hàng thành công")


class ClientSecretOut(Out):
    client_secret: str  # `Authorization: Bearer <it>`; on the event stream `?clientSecret=<it>`
    expires_at: datetime


class RevokedOut(Out):
    revoked: int  # how many live secrets of the order were revoked


@router.post(
    "/{ref}/client-secret", status_code=201, response_model=Envelope[ClientSecretOut], responses=error_responses(404)
)
async def create_client_secret(ref: str, user: CurrentUser, conn: ConnDep, settings: SettingsDep) -> JSONResponse:
    """For the shop's backend (the customer's JWT or an admin/service one): a secret for this one
    order that the shopper's browser may hold. Minting another leaves earlier ones valid."""
    row = await find_order(conn, ref, user)
    secret, expires_at = await client_secrets.mint(conn, settings, row)
    await conn.commit()
    return ok(ClientSecretOut(client_secret=secret, expires_at=expires_at), "Client secret created", 201)


@router.delete("/{ref}/client-secret", response_model=Envelope[RevokedOut], responses=error_responses(404))
async def revoke_client_secrets(ref: str, user: CurrentUser, conn: ConnDep) -> JSONResponse:
    """Revoke every live client secret of the order (e.g. the shopper signed out)."""
    row = await find_order(conn, ref, user)
    revoked = await client_secrets.revoke(conn, row.id)
    await conn.commit()
    return ok(RevokedOut(revoked=revoked), "Client secrets revoked")
