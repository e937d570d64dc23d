"""Payment attempts and the inbox of verified verdicts: links made and stored, verdicts recorded,
money flagged for review, late money settled and refunded, what the webhooks store before they
signal, and the operators' money desk (attempts that need a person, stored verdicts)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.ids import refund_key, surplus_refund_key
from domain.messages import Attempt, AttemptUpdate, LinkInput, PaymentResult, ReviewInput
from domain.statuses import (
    HOLDS_MONEY,
    NEEDS_PERSON,
    SETTLED_MONEY,
    AttemptStatus,
    OrderStatus,
    SessionStatus,
    values_of,
)
from domain.verdicts import TRANSFER_CODE
from store.outbox import record_event
from store.pages import page_of
from store.status_sql import sql_in
from store.tables import Order, OrderSession, Payment, PaymentNotification

payment, inbox, order = Payment.__table__, PaymentNotification.__table__, Order.__table__
session = OrderSession.__table__


def attempt_from_row(row: Any) -> Attempt:
    return Attempt(
        attempt_no=row.attempt_no,
        gateway=row.gateway,
        gateway_order_id=row.gateway_order_id,
        request_id=row.request_id,
        amount=row.amount,
        status=row.status,
        payment_url=row.payment_url,
        created_at=row.created_at,
        result_code=row.result_code,
        transaction_id=row.transaction_id,
    )


def _by_gateway_id(gateway: str, gateway_order_id: str) -> Any:
    """The attempt itself, never a surplus row beside it (which shares its gateway order id)."""
    return and_(
        payment.c.gateway == gateway,
        payment.c.gateway_order_id == gateway_order_id,
        payment.c.surplus_of.is_(None),
    )


# ---- links -------------------------------------------------------------------------------------------------


async def stored_link(conn: AsyncConnection, order_id: str, attempt_no: int) -> Attempt | None:
    """The attempt an earlier try of the same step already made."""
    row = (
        await conn.execute(
            select(payment).where(
                payment.c.order_id == order_id,
                payment.c.attempt_no == attempt_no,
                payment.c.surplus_of.is_(None),
            )
        )
    ).first()
    return attempt_from_row(row) if row is not None else None


async def attempt_by_gateway_id(
    conn: AsyncConnection, order_id: str, gateway: str, gateway_order_id: str
) -> Attempt | None:
    """One of this order's attempts, by its gateway's id."""
    row = (
        await conn.execute(
            select(payment).where(payment.c.order_id == order_id, _by_gateway_id(gateway, gateway_order_id))
        )
    ).first()
    return attempt_from_row(row) if row is not None else None


# Raw SQL on purpose: the attempt and the session's count move in one statement, which also wakes
# the order's live streams.
STORE_LINK_SQL = text(
    """
    WITH ins AS (
        INSERT INTO payment (id, order_id, attempt_no, gateway, gateway_order_id,
            request_id, amount, status, payment_url, expires_at, created_at)
        VALUES (:pid, :id, :n, :gateway, :gid, :rid, :amount, 'pending', :url, :exp, :at)
        RETURNING *
    ), sess AS (
        UPDATE order_session SET payment_attempts = GREATEST(payment_attempts, :n),
            last_payment_attempt = :at, updated_at = now()
        WHERE order_id = :id
    ), announce AS (
        SELECT pg_notify('order_events', CAST(:id AS text))
    )
    SELECT ins.* FROM ins, announce
    """
)


async def store_link(
    conn: AsyncConnection, inp: LinkInput, gateway_order_id: str, request_id: str, payment_url: str
) -> Attempt:
    row = (
        await conn.execute(
            STORE_LINK_SQL,
            {
                "pid": uuid.uuid4(),
                "id": inp.order_id,
                "n": inp.attempt_no,
                "gateway": inp.gateway,
                "gid": gateway_order_id,
                "rid": request_id,
                "amount": inp.amount,
                "url": payment_url,
                "exp": inp.expires_at,
                "at": inp.created_at,
            },
        )
    ).one()
    return attempt_from_row(row)


async def record_attempt(conn: AsyncConnection, update_: AttemptUpdate) -> None:
    """A verdict that does not end the order, on an attempt still pending (and its streams told)."""
    await conn.execute(
        text(
            """
            WITH p AS (
                UPDATE payment SET status = :status, result_code = :rc,
                    transaction_id = coalesce(:tx, transaction_id), updated_at = now()
                WHERE order_id = :id AND attempt_no = :n AND status = 'pending' AND surplus_of IS NULL
            )
            SELECT pg_notify('order_events', CAST(:id AS text))
            """
        ),
        {
            "status": update_.status,
            "rc": update_.result_code,
            "tx": update_.transaction_id,
            "id": update_.order_id,
            "n": update_.attempt_no,
        },
    )


async def record_cancel_failure(conn: AsyncConnection, gateway: str, gateway_order_id: str, why: str) -> None:
    await conn.execute(
        update(payment)
        .where(_by_gateway_id(gateway, gateway_order_id))
        .values(cancel_failures=payment.c.cancel_failures + 1, cancel_error=why, updated_at=func.now())
    )


# ---- money that needs a person --------------------------------------------------------------------------

FLAG_SQL = text(
    f"""
    WITH p AS (
        UPDATE payment SET status = 'needs_review', review_reason = :reason, received_amount = :amount,
            result_code = :rc, transaction_id = coalesce(:tx, transaction_id), updated_at = now()
        WHERE gateway = :gateway AND gateway_order_id = :gid AND surplus_of IS NULL
            AND status NOT IN {sql_in(SETTLED_MONEY)}
            AND (status <> 'needs_review' OR review_reason IS DISTINCT FROM :reason)
        RETURNING order_id
    )
    SELECT p.order_id, pg_notify('order_events', CAST(p.order_id AS text)) FROM p
    """
)


# Raw SQL on purpose: the surplus row is made from its attempt's own row in one statement, once
# per transfer (ix_payment_surplus_transfer), and the order's live streams are told.
SURPLUS_SQL = text(
    """
    WITH p AS (
        INSERT INTO payment (id, order_id, attempt_no, gateway, gateway_order_id, request_id, amount, status,
            result_code, transaction_id, payment_url, expires_at, review_reason, received_amount, surplus_of,
            created_at, updated_at)
        SELECT :pid, a.order_id, a.attempt_no, a.gateway, a.gateway_order_id, a.request_id, :amount,
            'needs_review', :rc, :tx, a.payment_url, a.expires_at, :reason, :amount, a.id, now(), now()
        FROM payment a
        WHERE a.gateway = :gateway AND a.gateway_order_id = :gid AND a.surplus_of IS NULL
        ON CONFLICT (gateway, gateway_order_id, transaction_id) WHERE surplus_of IS NOT NULL DO NOTHING
        RETURNING order_id
    )
    SELECT p.order_id, pg_notify('order_events', CAST(p.order_id AS text)) FROM p
    """
)


async def flag(conn: AsyncConnection, review: ReviewInput) -> bool:
    """The one place money goes to review (the workflow, the late settlement, the webhook intake):
    the attempt becomes `needs_review` with the reason and what it received, or (`review.surplus`)
    the money gets a `needs_review` row of its own beside the attempt, for its amount, once per
    transfer; `payment.needs_review` is published. False when nothing changed (settled money,
    flagged for this reason before, a surplus row this transfer has already)."""
    if review.surplus:
        params = {
            "pid": uuid.uuid4(),
            "amount": review.amount or 0,
            "rc": review.result_code,
            "reason": review.reason[:300],
            "tx": review.transaction_id or f"{review.result_code}:{review.amount}",
            "gateway": review.gateway,
            "gid": review.gateway_order_id,
        }
        row = (await conn.execute(SURPLUS_SQL, params)).first()
        if row is not None:
            await record_event(
                conn,
                str(row.order_id),
                "payment.needs_review",
                gatewayOrderId=review.gateway_order_id,
                reviewReason=review.reason,
                receivedAmount=review.amount,
                surplus=True,
            )
        return row is not None
    row = (
        await conn.execute(
            FLAG_SQL,
            {
                "reason": review.reason[:300],
                "amount": review.amount,
                "rc": review.result_code,
                "tx": review.transaction_id,
                "gateway": review.gateway,
                "gid": review.gateway_order_id,
            },
        )
    ).first()
    if row is None:
        return False
    await record_event(
        conn,
        str(row.order_id),
        "payment.needs_review",
        gatewayOrderId=review.gateway_order_id,
        reviewReason=review.reason,
        receivedAmount=review.amount,
    )
    return True


# ---- the inbox ----------------------------------------------------------------------------------------------


def dedupe_key(
    gateway: str,
    gateway_order_id: str,
    outcome: str,
    transaction_id: str | None,
    result_code: str,
    amount: int | None,
) -> str:
    """One row per (attempt, verdict, gateway transaction, amount): retries of the same message
    collapse, while a signed claim of another amount is kept apart (it goes to review)."""
    return f"{gateway}:{gateway_order_id}:{outcome}:{transaction_id or result_code}:{amount}"


@dataclass(frozen=True)
class Matched:
    """The attempt a verdict is for, and its order."""

    order_id: str
    order_code: int
    order_status: str
    amount: int
    attempt_status: str


async def match(conn: AsyncConnection, gateway: str, gateway_order_id: str) -> Matched | None:
    row = (
        await conn.execute(
            select(
                payment.c.order_id,
                payment.c.amount,
                payment.c.status.label("attempt_status"),
                order.c.order_code,
                order.c.status,
            )
            .join(order, order.c.id == payment.c.order_id)
            .where(_by_gateway_id(gateway, gateway_order_id))
        )
    ).first()
    if row is None:
        return None
    return Matched(
        order_id=str(row.order_id),
        order_code=row.order_code,
        order_status=row.status,
        amount=row.amount,
        attempt_status=row.attempt_status,
    )


async def store_verdict(
    conn: AsyncConnection, order_id: str | None, verdict: PaymentResult, key: str, payload: dict[str, Any]
) -> tuple[bool, bool]:
    """Keep a verified verdict (once per dedupe key); `order_id` None: it matches no attempt of ours.
    Returns (stored now, still to be handed to its order)."""
    stored = (
        await conn.execute(
            insert(inbox)
            .values(
                id=uuid.uuid4(),
                order_id=order_id,
                gateway=verdict.gateway,
                gateway_order_id=verdict.gateway_order_id,
                dedupe_key=key,
                outcome=verdict.outcome,
                result_code=verdict.result_code,
                amount=verdict.amount,
                transaction_id=verdict.transaction_id,
                payload=payload,
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(inbox.c.id)
        )
    ).first()
    if stored is not None:
        if order_id is not None:
            await conn.execute(
                update(payment)
                .where(_by_gateway_id(verdict.gateway, verdict.gateway_order_id))
                .values(raw_notification=payload, updated_at=func.now())
            )
        return True, True
    delivered = (await conn.execute(select(inbox.c.delivered_at).where(inbox.c.dedupe_key == key))).scalar()
    return False, delivered is None


async def transfers_received(conn: AsyncConnection, gateway: str, gateway_order_id: str) -> int:
    """What a link that takes several transfers has received: each verified transfer in the inbox
    once (by its reference), its signed amount."""
    by_transfer = (
        select(func.max(inbox.c.amount).label("amount"))
        .where(
            inbox.c.gateway == gateway,
            inbox.c.gateway_order_id == gateway_order_id,
            inbox.c.outcome == "success",
            inbox.c.result_code == TRANSFER_CODE,
        )
        .group_by(func.coalesce(inbox.c.transaction_id, inbox.c.dedupe_key))
        .subquery()
    )
    return int((await conn.execute(select(func.coalesce(func.sum(by_transfer.c.amount), 0)))).scalar_one())


async def mark_delivered(conn: AsyncConnection, key: str) -> None:
    await conn.execute(
        update(inbox)
        .where(inbox.c.dedupe_key == key, inbox.c.delivered_at.is_(None))
        .values(delivered_at=func.now())
    )


async def take_inbox(conn: AsyncConnection, order_id: str) -> list[PaymentResult]:
    """Every verdict stored for the order (a signal may have been lost while Temporal was away),
    marked delivered: the reconciliation hands them to the workflow, which applies each once."""
    rows = await conn.execute(
        update(inbox)
        .where(inbox.c.order_id == order_id)
        .values(delivered_at=func.coalesce(inbox.c.delivered_at, func.now()))
        .returning(
            inbox.c.gateway,
            inbox.c.gateway_order_id,
            inbox.c.outcome,
            inbox.c.result_code,
            inbox.c.amount,
            inbox.c.transaction_id,
        )
    )
    return [
        PaymentResult(
            gateway=r.gateway,
            gateway_order_id=r.gateway_order_id,
            outcome=r.outcome,
            result_code=r.result_code,
            amount=r.amount,
            transaction_id=r.transaction_id,
        )
        for r in rows
    ]


async def attempt_created_at(conn: AsyncConnection, gateway: str, gateway_order_id: str) -> datetime | None:
    return (
        await conn.execute(select(payment.c.created_at).where(_by_gateway_id(gateway, gateway_order_id)))
    ).scalar()


# ---- late money -----------------------------------------------------------------------------------------------


async def lock_for_settlement(conn: AsyncConnection, gateway: str, gateway_order_id: str) -> Any:
    """The attempt and its order, locked while late money is decided (None: no such attempt)."""
    return (
        await conn.execute(
            select(
                order.c.status.label("order_status"),
                order.c.grand_total,
                payment.c.attempt_no,
                payment.c.status,
                payment.c.amount,
                payment.c.transaction_id,
            )
            .join(order, order.c.id == payment.c.order_id)
            .where(_by_gateway_id(gateway, gateway_order_id))
            .with_for_update(of=[order, payment])
        )
    ).first()


async def lock_link(conn: AsyncConnection, gateway: str, gateway_order_id: str) -> None:
    """One settlement of a link's late transfers at a time, until the transaction ends (an advisory
    lock: the webhook intake, which never takes it, is not held up)."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"link:{gateway}:{gateway_order_id}"}
    )


async def link_accounted(conn: AsyncConnection, gateway: str, gateway_order_id: str) -> int:
    """The money our rows hold for a link: its attempt's (what paid the order, or is under review or
    going back) and its surplus rows'."""
    holding = values_of(HOLDS_MONEY)
    held = func.coalesce(payment.c.received_amount, payment.c.amount)
    query = select(func.coalesce(func.sum(held), 0)).where(
        payment.c.gateway == gateway,
        payment.c.gateway_order_id == gateway_order_id,
        payment.c.status.in_(holding),
    )
    return int((await conn.execute(query)).scalar_one())


async def accept_late(
    conn: AsyncConnection,
    order_id: str,
    attempt_no: int,
    result_code: str,
    tx: str | None,
    received: int | None = None,
) -> None:
    """LATE_PAYMENT_POLICY=accept_if_available: an expired order becomes paid by its late money
    (its items were reserved again by the caller, in this transaction)."""
    moved = (
        await conn.execute(
            update(order)
            .where(order.c.id == order_id, order.c.status == OrderStatus.EXPIRED.value)
            .values(
                status=OrderStatus.PAID.value,
                end_reason="late_payment_accepted",
                late_payment=True,
                updated_at=func.now(),
                ended_at=func.now(),
            )
            .returning(order.c.id)
        )
    ).first()
    if moved is None:
        return
    await conn.execute(
        update(session)
        .where(session.c.order_id == order_id)
        .values(status=SessionStatus.COMPLETED.value, updated_at=func.now())
    )
    await _settle_attempt(conn, order_id, attempt_no, AttemptStatus.SUCCESS, result_code, tx, received)
    await record_event(conn, order_id, "order.paid", latePayment=True)


async def require_refund(
    conn: AsyncConnection,
    order_id: str,
    attempt_no: int,
    result_code: str,
    tx: str | None,
    gateway_order_id: str,
    received: int | None = None,
) -> None:
    await conn.execute(
        update(order).where(order.c.id == order_id).values(late_payment=True, updated_at=func.now())
    )
    await _settle_attempt(
        conn, order_id, attempt_no, AttemptStatus.REFUND_REQUIRED, result_code, tx, received
    )
    await record_event(conn, order_id, "payment.refund_required", gatewayOrderId=gateway_order_id)


async def _settle_attempt(
    conn: AsyncConnection,
    order_id: str,
    attempt_no: int,
    status: AttemptStatus,
    result_code: str,
    tx: str | None,
    received: int | None = None,
) -> None:
    """The late money's decision on its attempt, with what the gateway reported receiving."""
    await conn.execute(
        update(payment)
        .where(
            payment.c.order_id == order_id, payment.c.attempt_no == attempt_no, payment.c.surplus_of.is_(None)
        )
        .values(
            status=status.value,
            result_code=result_code,
            transaction_id=func.coalesce(tx, payment.c.transaction_id),
            received_amount=func.coalesce(received, payment.c.received_amount),
            updated_at=func.now(),
        )
    )


async def by_gateway_id(
    conn: AsyncConnection, gateway: str, gateway_order_id: str, *, lock: bool = False
) -> Any:
    """The attempt (None: not ours). `lock`: before a refund, so an operator's mark-refunded in progress
    is waited for and seen."""
    query = select(payment).where(_by_gateway_id(gateway, gateway_order_id))
    return (await conn.execute(query.with_for_update() if lock else query)).first()


async def mark_refunded(
    conn: AsyncConnection,
    payment_id: Any,
    order_id: str,
    gateway_order_id: str,
    *,
    note: str | None = None,
    from_statuses: tuple[str, ...] = (AttemptStatus.REFUND_REQUIRED.value,),
    publish: bool = True,
    **event: Any,
) -> bool:
    """The money went back: refund_required (or, by an operator, needs_review) -> refunded, once, with
    how (`note`) and `payment.refunded` (unless the caller publishes it). False when it was not in
    `from_statuses` any more."""
    done = (
        await conn.execute(
            update(payment)
            .where(payment.c.id == payment_id, payment.c.status.in_(from_statuses))
            .values(
                status=AttemptStatus.REFUNDED.value,
                refund_note=func.coalesce(note, payment.c.refund_note),
                updated_at=func.now(),
            )
            .returning(payment.c.id)
        )
    ).first()
    if done is not None and publish:
        await record_event(conn, order_id, "payment.refunded", gatewayOrderId=gateway_order_id, **event)
    return done is not None


async def note_refund(conn: AsyncConnection, payment_id: Any, note: str) -> None:
    """What the last refund attempt said (a refusal, an unreachable gateway): the desk shows it."""
    await conn.execute(update(payment).where(payment.c.id == payment_id).values(refund_note=note[:300]))


# ---- a gateway refund asked: what the refund activities write and the desk reads ------------------------
# `refund_asked_at` is set before a refund request leaves for the gateway (refund_asked, or the desk's
# ask_refund) and cleared only by the gateway's definite no (refund_refused). While it is set and the
# money is not `refunded`, the refund may have happened (an answer lost, a call still landing), so
# nobody may send the money back by hand: only the gateway, asked again under the payment's one
# refund key, can say. An unknown outcome keeps it set (note_refund says what was heard).


def refund_amount(row: Any) -> int:
    """What a refund returns: exactly what the gateway took. A row without `received_amount` was
    paid exactly its `amount` (only such money settles without review)."""
    amount: int = row.received_amount if row.received_amount is not None else row.amount
    return amount


def gateway_refund_key(row: Any) -> str:
    """The one key a payment's refund goes under at its gateway, whoever asks. A surplus row (money
    beside its attempt) has its own: under the attempt's, a gateway would read it as the attempt's
    refund (already done, or a duplicate id) and the surplus would never go back."""
    if row.surplus_of is not None:
        return surplus_refund_key(str(row.id))
    return refund_key(str(row.order_id), row.attempt_no)


async def refund_asked(conn: AsyncConnection, payment_id: Any) -> None:
    """Commit this before the refund request leaves: from now on the money may be on its way back."""
    await conn.execute(
        update(payment)
        .where(payment.c.id == payment_id)
        .values(refund_asked_at=func.coalesce(payment.c.refund_asked_at, func.now()))
    )


async def refund_refused(conn: AsyncConnection, payment_id: Any, note: str) -> None:
    """The gateway definitely refused (nothing went back): a person may return the money by hand."""
    await conn.execute(
        update(payment).where(payment.c.id == payment_id).values(refund_asked_at=None, refund_note=note[:300])
    )


# ---- the money desk: payments that need a person ----------------------------------------------------------


async def lock_payment(conn: AsyncConnection, payment_id: Any) -> Any:
    """An attempt with its order's code and status, locked while an operator acts on its money
    (None: no such attempt)."""
    return (
        await conn.execute(
            select(payment, order.c.order_code, order.c.status.label("order_status"))
            .join(order, order.c.id == payment.c.order_id)
            .where(payment.c.id == payment_id)
            .with_for_update(of=payment)
        )
    ).first()


async def ask_refund(conn: AsyncConnection, payment_id: Any) -> int:
    """An operator sends the money back through the gateway: needs_review -> refund_required, the
    row carries what was received (the refund's amount) and is marked asked before the request
    leaves (see refund_asked). Returns the amount that goes back."""
    received = func.coalesce(payment.c.received_amount, payment.c.amount)
    amount: int = (
        await conn.execute(
            update(payment)
            .where(payment.c.id == payment_id, payment.c.status.in_(values_of(NEEDS_PERSON)))
            .values(
                status=AttemptStatus.REFUND_REQUIRED.value,
                received_amount=received,
                refund_asked_at=func.coalesce(payment.c.refund_asked_at, func.now()),
                updated_at=func.now(),
            )
            .returning(payment.c.received_amount)
        )
    ).scalar_one()
    return amount


@dataclass(frozen=True)
class DeskFilter:
    statuses: tuple[str, ...] = values_of(NEEDS_PERSON)
    gateway: str | None = None
    date_from: datetime | None = None  # on the attempt's last change
    date_to: datetime | None = None
    payment_id: Any = None


async def desk(conn: AsyncConnection, where: DeskFilter, limit: int, offset: int) -> tuple[int, list[Any]]:
    """One page of attempts in `statuses`, the longest waiting first, with their orders' codes and
    statuses, and how many match (the default statuses read ix_payment_needs_person)."""
    conditions: list[ColumnElement[bool]] = [payment.c.status.in_(where.statuses)]
    if where.gateway is not None:
        conditions.append(payment.c.gateway == where.gateway)
    if where.date_from is not None:
        conditions.append(payment.c.updated_at >= where.date_from)
    if where.date_to is not None:
        conditions.append(payment.c.updated_at < where.date_to)
    if where.payment_id is not None:
        conditions.append(payment.c.id == where.payment_id)
    query = select(payment, order.c.order_code, order.c.status.label("order_status")).join(
        order, order.c.id == payment.c.order_id
    )
    return await page_of(
        conn, query, payment, conditions, (payment.c.updated_at, payment.c.id), limit, offset
    )


async def inbox_page(
    conn: AsyncConnection, undelivered: bool, limit: int, offset: int
) -> tuple[int, list[Any]]:
    """Stored verdicts (`undelivered`: only those never handed to their order, the oldest first, read
    from ix_payment_notification_undelivered; else all, the newest first), unmatched ones included
    (no order), each with its order's code, and how many match."""
    conditions = [inbox.c.delivered_at.is_(None)] if undelivered else []
    newest_first = (inbox.c.received_at.desc(), inbox.c.id)
    order_by = (inbox.c.received_at, inbox.c.id) if undelivered else newest_first
    query = select(inbox, order.c.order_code).outerjoin(order, order.c.id == inbox.c.order_id)
    return await page_of(conn, query, inbox, conditions, order_by, limit, offset)


async def inbox_row(conn: AsyncConnection, notification_id: Any) -> Any:
    """One stored verdict with its order's code (None: no such row)."""
    return (
        await conn.execute(
            select(inbox, order.c.order_code)
            .outerjoin(order, order.c.id == inbox.c.order_id)
            .where(inbox.c.id == notification_id)
        )
    ).first()


def raw(payload: dict[str, Any]) -> dict[str, Any]:
    """A gateway message as JSON can hold it (datetimes and the like as text)."""
    loaded: dict[str, Any] = json.loads(json.dumps(payload, ensure_ascii=False, default=str))
    return loaded
