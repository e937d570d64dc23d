"""Shopper-facing order routes: create, list, detail, session countdown, retry, cancel, and the
order's client secret (minted and revoked with a JWT; detail, session, retry and cancel also take
the secret itself, see services/client_secrets.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from api.deps import (
    ConnDep,
    CurrentUser,
    EngineDep,
    OrderCaller,
    PageNumber,
    PageSize,
    SettingsDep,
    TemporalDep,
)
from api.errors import error_responses, ok
from services import client_secrets, order_commands, order_reads
from services.errors import AppError, ErrorCode
from services.schemas import (
    AttemptStatusName,
    CancelIn,
    ClientSecretOut,
    Envelope,
    OrderCreate,
    OrderOut,
    OrderStatusName,
    OrderSummary,
    Page,
    RetryIn,
    RetryOut,
    RevokedOut,
    SessionOut,
)

router = APIRouter(prefix="/orders", tags=["orders"])


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
    response: Response,
    user: CurrentUser,
    settings: SettingsDep,
    engine: EngineDep,
    client: TemporalDep,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> Envelope[OrderOut]:
    """Create an order and its payment window: stock reserved, prices frozen, the first payment
    link made. 200 with the same order for a retry under the same `Idempotency-Key`."""
    client_ip = request.client.host if request.client else "127.0.0.1"
    placed = await order_commands.place_order(
        engine, client, settings, user, body, idempotency_key=idempotency_key, client_ip=client_ip
    )
    if placed.replay:
        response.status_code = 200
        return ok(placed.order, "Order already created (idempotent replay)")
    return ok(placed.order, "Đơn hàng đã được tạo ở trạng thái PENDING, đang xử lý thanh toán")


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
) -> Envelope[Page[OrderSummary]]:
    """Orders, newest first: a customer's own; an admin's, anyone's (`customerId`)."""
    if customer_id is not None and not user.is_admin and customer_id != user.id:
        raise AppError(ErrorCode.FORBIDDEN, "Customers can only list their own orders")
    result = await order_reads.list_orders(
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
async def get_order(ref: str, user: OrderCaller, conn: ConnDep) -> Envelope[OrderOut]:
    """One order by id or 9-digit code: items, window, attempts."""
    return ok(await order_reads.order_for(conn, ref, user))


@router.get("/{ref}/session", response_model=Envelope[SessionOut], responses=error_responses(404))
async def get_session(ref: str, user: OrderCaller, conn: ConnDep) -> Envelope[SessionOut]:
    """The payment window's countdown and attempts left."""
    return ok(await order_reads.session_for(conn, ref, user))


@router.post(
    "/{ref}/retry-payment", response_model=Envelope[RetryOut], responses=error_responses(400, 404, 409, 502)
)
async def retry_payment(
    ref: str, user: OrderCaller, conn: ConnDep, client: TemporalDep, body: RetryIn | None = None
) -> Envelope[RetryOut]:
    """A new payment link (optionally through another gateway) while the window is open."""
    retried = await order_commands.retry_payment(conn, client, ref, user, body.gateway if body else None)
    return ok(retried, "Đang xử lý thanh toán lại")


@router.post("/{ref}/cancel", response_model=Envelope[OrderOut], responses=error_responses(404, 409))
async def cancel_order(
    ref: str, user: OrderCaller, conn: ConnDep, client: TemporalDep, body: CancelIn | None = None
) -> Envelope[OrderOut]:
    """Cancel the order while it waits for payment (stock goes back)."""
    cancelled = await order_commands.cancel_order(conn, client, ref, user, body.reason if body else "")
    return ok(cancelled, "Hủy đơn hàng thành công")


@router.post(
    "/{ref}/client-secret",
    status_code=201,
    response_model=Envelope[ClientSecretOut],
    responses=error_responses(404),
)
async def create_client_secret(
    ref: str, user: CurrentUser, conn: ConnDep, settings: SettingsDep
) -> Envelope[ClientSecretOut]:
    """For the shop's backend (the customer's JWT or an admin/service one): a secret for this one
    order that the shopper's browser may hold. Minting another leaves earlier ones valid."""
    return ok(await client_secrets.mint_for(conn, settings, ref, user), "Client secret created")


@router.delete("/{ref}/client-secret", response_model=Envelope[RevokedOut], responses=error_responses(404))
async def revoke_client_secrets(ref: str, user: CurrentUser, conn: ConnDep) -> Envelope[RevokedOut]:
    """Revoke every live client secret of the order (when the shopper signs out, say)."""
    return ok(await client_secrets.revoke_for(conn, ref, user), "Client secrets revoked")
