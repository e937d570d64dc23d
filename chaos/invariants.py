"""What must hold after every scenario, checked over Postgres, Temporal visibility, the gateways'
own ledger, the workers' logs and what the shoppers saw.

  orders        every key the client got 201/200 for has its order row (id = the key's order id),
                every answer for a key carried that one id, no refused create left a row, no row
                is unaccounted for, every row has its workflow (`order-<id>`)
  terminal      every order ended in exactly one terminal state, the one its shopper drove it to
                (expectations below); `ended_at` set iff ended; the session mirrors the order;
                the guarded transition's effect is in Postgres once per ended order: exactly one
                `order.<terminal>` outbox row, written by the statement that moved it, of the
                status the row holds (`double_transitions`, `transition_unrecorded`)
  stock         per variant: initial == on hand + reserved (pending) + sold (paid); none negative
  money         a paid order has one success and only a paid order has one; a payment made before
                the deadline never ends on an `expired` order; MoMo / VNPay late money is refunded
                (no `refund_required` left); VND by VND, the ledger walk below
  workflows     nothing Running past its deadline + grace + bound (visibility vs Postgres); no
                order pending whose workflow has closed; no order workflow closed in any state
                but Completed (`workflows_failed`: Failed, Terminated or Timed out)
  on time       no order ends later than deadline + grace + LATE_CLOSE_S (`late_closes`), unless
                Postgres, Temporal or the workers were down then: an outage moves the bound to its end
  money         `money_unaccounted`: a payment the gateway took that is neither the success of a
                paid order nor refund_required / needs_review / refunded
  events        `events_undelivered_after_recovery`: an order event not delivered to the receiver
                once it was back (or not seen there)
  history       `max_history_events` per order workflow (reported), `history_growth` above
                HISTORY_BOUND (a replay flood must not grow an order's history)
  ledger        walked over the gateways' own record (chaos/ledger.py): `ledger_mismatches`,
                `double_refunds`, `manual_refund_invitations_for_returned_money`,
                `unconfirmed_link_failures` (a payment_link_unavailable order whose link the
                gateway did make)

Each check adds its violations (dicts with the order id and what was wrong) to a `Report`; a
scenario passes when there are none. `findings` are noteworthy but break no invariant.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from chaos.ledger import (
    HandRefund,
    LedgerReport,
    LinkFailure,
    OurPayment,
    keys_of,
    order_code_of,
    since,
    walk,
)
from chaos.load import TERMINAL, OrderRecord
from domain.ids import late_workflow_id, workflow_id
from domain.statuses import HOLDS_MONEY, OPERATOR_SETTLED, SESSION_FOR_ORDER, SETTLED_MONEY, OrderStatus

MARGIN_S = 1.0  # clock and scheduling slack when comparing a click with a deadline
LATE_CLOSE_S = 30.0  # an order ends by deadline + grace + this, whatever its optional effects do
HISTORY_BOUND = 200  # events in one order's history: a paid order has ~40, a retried one ~80
TERMINAL_EVENTS = ("order.paid", "order.cancelled", "order.expired", "order.failed")


@dataclass
class Facts:
    """Everything the checks read, gathered once after the scenario drained."""

    now: float
    orders: dict[str, Any]  # order id -> row
    items: dict[str, list[Any]]  # order id -> item rows
    payments: dict[str, list[Any]]  # order id -> payment rows
    variants: dict[str, int]  # variant id -> stock_quantity now
    undelivered_inbox: list[Any]
    success_inbox: dict[tuple[str, str], list[bool]]  # (gateway, id) -> delivered flags of success rows
    workflows: dict[str, Any]  # workflow id -> (status, start_time) for our orders
    running_order_workflows: list[str]  # every Running OrderWorkflow id (any scenario)
    late_workflows: dict[str, str]  # late workflow id -> status name (or "missing")
    ledger: dict[tuple[str, str], dict[str, Any]]  # (gateway, id) -> transaction
    transitions: dict[str, list[str]]  # order id -> its `order.<terminal>` outbox rows ("expired", ...)
    history_lengths: dict[str, int] = field(default_factory=dict)  # order workflow id -> events
    events: list[Any] = field(default_factory=list)  # the orders' order_event rows
    received_events: set[str] = field(default_factory=set)  # event ids the receiver took


@dataclass
class Report:
    violations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)  # noteworthy, not a broken invariant

    def add(self, check: str, **detail: Any) -> None:
        self.violations.setdefault(check, []).append(detail)

    @property
    def passed(self) -> bool:
        return not any(self.violations.values())


# ---- gathering ---------------------------------------------------------------------------------------


async def gather_facts(
    pg_dsn: str,
    client: Client,
    records: list[OrderRecord],
    customer: str,
    variant_ids: list[str],
    ledger: list[dict[str, Any]],
    received_events: set[str] | None = None,
) -> Facts:
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT o.id::text AS id, o.status, o.end_reason, o.late_payment, o.grand_total,
                   o.created_at, o.updated_at, o.ended_at, s.expires_at, s.status AS session_status
            FROM "order" o JOIN order_session s ON s.order_id = o.id
            WHERE o.customer_id = $1
            """,
            customer,
        )
        ids = [r["id"] for r in rows]
        items = await conn.fetch(
            "SELECT order_id::text AS order_id, variant_id::text AS variant_id, quantity FROM order_item "
            "WHERE order_id = ANY($1::uuid[])",
            ids,
        )
        payments = await conn.fetch(
            "SELECT order_id::text AS order_id, attempt_no, gateway, gateway_order_id, status, amount, "
            "result_code, created_at, updated_at FROM payment WHERE order_id = ANY($1::uuid[])",
            ids,
        )
        variants = await conn.fetch(
            "SELECT id::text AS id, stock_quantity FROM product_variant WHERE id = ANY($1::uuid[])",
            variant_ids,
        )
        inbox = await conn.fetch(
            "SELECT order_id::text AS order_id, gateway, gateway_order_id, outcome, received_at, "
            "delivered_at IS NOT NULL AS delivered FROM payment_notification "
            "WHERE order_id = ANY($1::uuid[])",
            ids,
        )
        events = await conn.fetch(
            "SELECT id::text AS id, order_id::text AS order_id, type, attempts, delivered_at FROM order_event "
            "WHERE order_id = ANY($1::uuid[])",
            ids,
        )
    finally:
        await conn.close()

    by_items: dict[str, list[Any]] = defaultdict(list)
    for i in items:
        by_items[i["order_id"]].append(i)
    by_payments: dict[str, list[Any]] = defaultdict(list)
    for p in payments:
        by_payments[p["order_id"]].append(p)

    workflows: dict[str, Any] = {}
    async for wf in client.list_workflows(f'WorkflowType="OrderWorkflow" AND CustomerId="{customer}"'):
        workflows[wf.id] = (wf.status, wf.start_time)
    wanted = {workflow_id(r["id"]) for r in rows} | {workflow_id(rec.order_id) for rec in records}
    for wid in wanted - set(workflows):  # visibility may lag, and a workflow that never created its
        try:  # order has no CustomerId yet: ask for each one directly
            desc = await client.get_workflow_handle(wid).describe()
            workflows[wid] = (desc.status, desc.start_time)
        except RPCError:
            pass
    running = [
        wf.id
        async for wf in client.list_workflows('ExecutionStatus="Running" AND WorkflowType="OrderWorkflow"')
    ]

    index = ledger_index(ledger)
    late: dict[str, str] = {}
    for p in payments:
        txn = index.get((p["gateway"], p["gateway_order_id"]))
        if p["status"] in OPERATOR_SETTLED or (txn and txn["state"] == "paid" and p["status"] != "success"):
            wid = late_workflow_id(p["gateway"], p["gateway_order_id"])
            try:
                desc = await client.get_workflow_handle(wid).describe()
                late[wid] = desc.status.name if desc.status else "UNKNOWN"
            except RPCError:
                late[wid] = "missing"

    lengths: dict[str, int] = {}
    for wid in workflows:
        try:
            lengths[wid] = (await client.get_workflow_handle(wid).describe()).history_length
        except RPCError:
            pass
    transitions = await read_transitions(pg_dsn, ids)
    return Facts(
        now=datetime.now(UTC).timestamp(),
        orders={r["id"]: r for r in rows},
        items=by_items,
        payments=by_payments,
        variants={v["id"]: v["stock_quantity"] for v in variants},
        undelivered_inbox=[r for r in inbox if not r["delivered"]],
        success_inbox=_success_inbox(inbox),
        workflows=workflows,
        running_order_workflows=running,
        late_workflows=late,
        ledger=index,
        transitions=transitions,
        history_lengths=lengths,
        events=list(events),
        received_events=received_events or set(),
    )


def _success_inbox(inbox: list[Any]) -> dict[tuple[str, str], list[bool]]:
    out: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for r in inbox:
        if r["outcome"] == "success":
            out[(r["gateway"], r["gateway_order_id"])].append(r["delivered"])
    return out


def ledger_index(ledger: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(t["gateway"], t["id"]): t for t in ledger}


async def read_transitions(pg_dsn: str, order_ids: list[str]) -> dict[str, list[str]]:
    """Per order, the terminal statuses its transition statement wrote: TRANSITION_SQL inserts the
    `order.<status>` outbox row in the statement that moves the order, and only when it moves it."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT order_id::text AS order_id, type FROM order_event "
            "WHERE order_id = ANY($1::uuid[]) AND type = ANY($2::text[]) ORDER BY created_at",
            list(set(order_ids)),
            list(TERMINAL_EVENTS),
        )
    finally:
        await conn.close()
    out: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        out[r["order_id"]].append(r["type"].removeprefix("order."))
    return out


# ---- expectations ------------------------------------------------------------------------------------


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    return value.timestamp() if isinstance(value, datetime) else datetime.fromisoformat(value).timestamp()


def accepted_clicks(rec: OrderRecord, action: str) -> list[Any]:
    return [c for c in rec.clicks if c.action == action and c.status == 200]


Fault = tuple[str, float, float]  # a gateway that hung or answered garbage, from .. to (epoch s)


def expected_statuses(
    rec: OrderRecord, row: Any, ledger: dict[tuple[str, str], dict[str, Any]], faults: Sequence[Fault] = ()
) -> set[str]:
    """The terminal states this order may end in, given what its shopper did and saw. Where one of
    its gateways could not be asked around the deadline (a fault), the window may close without that
    gateway's verdict: `expired` is allowed too (money then goes the late way, checked by money)."""
    allowed = _expected(rec, row, ledger)
    deadline = row["expires_at"].timestamp()
    gateways = {a["gateway"] for a in rec.attempts.values()} or {rec.plan.gateway}
    blind = any(
        g in gateways and start <= deadline + LATE_CLOSE_S and end >= deadline - 10
        for g, start, end in faults
    )
    if not blind or rec.plan.kind == "cancel" or row["end_reason"] == "payment_link_unavailable":
        return allowed
    return allowed | {"expired"}


def _expected(rec: OrderRecord, row: Any, ledger: dict[tuple[str, str], dict[str, Any]]) -> set[str]:
    deadline = row["expires_at"].timestamp()

    def told_in_time(click: Any) -> bool:
        """Did our API take the gateway's notification of this click before the deadline? VNPay's
        querydr reports a decline as TransactionStatus 02, like a failure: only its IPN says 24."""
        attempt = rec.attempts.get(click.attempt_no, {})
        txn = ledger.get((click.gateway, attempt.get("gatewayOrderId", "")), {})
        notified = _ts(txn.get("notified_at"))
        return notified is not None and notified < deadline - MARGIN_S

    def in_time(clicks: list[Any]) -> bool:
        return any(c.t1 < deadline - MARGIN_S for c in clicks)

    if row["end_reason"] == "payment_link_unavailable":
        return {"failed"}  # no link could be made (reported as a finding, not a broken rule)
    if rec.status_at_create in TERMINAL:
        return {rec.status_at_create}
    kind = rec.plan.kind
    if kind in ("pay", "fail_retry_pay"):
        pays = accepted_clicks(rec, "pay")
        if pays:
            return {"paid"} if in_time(pays) else {"paid", "expired"}
        return {"expired"}
    if kind in ("split_pay", "overpay"):
        transfers = [c for c in rec.clicks if c.action == "transfer" and c.status == 200]
        covering = transfers[-1:] if kind == "split_pay" and len(transfers) >= 2 else transfers[:1]
        if kind == "split_pay" and len(transfers) < 2:
            return {"expired"}  # short of the price: never pays
        if covering:
            return {"paid"} if in_time(covering) else {"paid", "expired"}
        return {"expired"}
    if kind == "late_topup":
        return {"expired"}  # short in time; the rest came after the close
    if kind == "fail_all":
        last = [c for c in accepted_clicks(rec, "fail") if c.attempt_no == 3]
        if last:
            return {"failed"} if in_time(last) else {"failed", "expired"}
        if any(c.attempt_no == 3 and c.gateway == "vnpay" and c.status == 410 for c in rec.clicks):
            # The last VNPay link lapsed under the shopper: querydr reports a lapse as
            # TransactionStatus 02, like a failure, so the reconciliation may end it either way.
            return {"failed", "expired"}
        return {"expired"}
    if kind == "decline":
        declines = accepted_clicks(rec, "decline") + accepted_clicks(rec, "cancel")
        known = [c for c in declines if c.gateway != "vnpay" or told_in_time(c)]
        if known:
            return {"cancelled"} if in_time(known) else {"cancelled", "expired"}
        if declines:
            return {"cancelled", "expired"}  # VNPay decline whose IPN could not be taken in time
        return {"expired"}
    if kind == "cancel":
        outcomes = [o for call, o in rec.calls if call == "cancel"]
        if "200" in outcomes:
            return {"cancelled"}
        if outcomes and all(o.startswith(("400", "409")) for o in outcomes):
            return {"expired"}  # refused: the window had closed first
        return {"cancelled", "expired"}  # the answer never came: either may have happened
    return {"expired"}  # expire, late_pay, and shoppers whose create never came back


# ---- checks -----------------------------------------------------------------------------------------------


def check_orders(facts: Facts, records: list[OrderRecord], report: Report) -> None:
    by_id = {rec.order_id: rec for rec in records}
    for rec in records:
        row = facts.orders.get(rec.order_id)
        if rec.created_ok and row is None:
            report.add(
                "lost_orders", order_id=rec.order_id, key=rec.key, why="client got 201/200, no order row"
            )
        if rec.returned_ids - {rec.order_id}:
            report.add("key_conflicts", key=rec.key, expected=rec.order_id, answered=sorted(rec.returned_ids))
        # A create answered 502 PAYMENT_GATEWAY_ERROR made its order (failed: no link), as documented.
        if rec.rejected and not rec.created_ok and row is not None and not rec.rejected.startswith("502"):
            report.add("refused_but_created", order_id=rec.order_id, answer=rec.rejected)
    for oid in facts.orders:
        if oid not in by_id:
            report.add("unexpected_orders", order_id=oid, why="no client key maps to this order")
        if workflow_id(oid) not in facts.workflows:
            report.add("lost_orders", order_id=oid, why="order row without a workflow")
    failed = (
        WorkflowExecutionStatus.FAILED,
        WorkflowExecutionStatus.TERMINATED,
        WorkflowExecutionStatus.TIMED_OUT,
    )
    for wid, (status, _) in facts.workflows.items():
        if status in failed:
            report.add("workflows_failed", workflow_id=wid, status=status.name)
        elif status not in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED):
            report.add("workflow_not_completed", workflow_id=wid, status=status.name if status else None)
    orphans = [r for r in records if not r.created_ok and r.order_id in facts.orders]
    if orphans:
        report.findings.append(
            f"{len(orphans)} orders exist whose create the client never saw succeed (it gave up or the "
            "answer was lost); each has its workflow and ended like any other"
        )


def check_terminal(
    facts: Facts, records: list[OrderRecord], report: Report, faults: Sequence[Fault] = ()
) -> None:
    by_id = {rec.order_id: rec for rec in records}
    for oid, row in facts.orders.items():
        status = row["status"]
        if status not in TERMINAL:
            report.add("not_terminal", order_id=oid, status=status, expires_at=row["expires_at"].isoformat())
            continue
        if row["ended_at"] is None:
            report.add("ended_at_unset", order_id=oid, status=status)
        expected_session = SESSION_FOR_ORDER[OrderStatus(status)].value
        if row["session_status"] != expected_session:
            report.add("session_mismatch", order_id=oid, status=status, session=row["session_status"])
        rec = by_id.get(oid)
        if rec is not None:
            allowed = expected_statuses(rec, row, facts.ledger, faults)
            if status not in allowed:
                report.add(
                    "wrong_terminal_state",
                    order_id=oid,
                    plan=rec.plan.kind,
                    gateway=rec.plan.gateway,
                    status=status,
                    end_reason=row["end_reason"],
                    expected=sorted(allowed),
                    clicks=[(c.attempt_no, c.action, c.status) for c in rec.clicks],
                    calls=rec.calls,
                )
    for oid, row in facts.orders.items():
        moves = facts.transitions.get(oid, [])
        if len(moves) > 1:
            report.add("double_transitions", order_id=oid, transitions=moves)
        elif row["status"] in TERMINAL and moves != [row["status"]]:
            report.add("transition_unrecorded", order_id=oid, status=row["status"], transitions=moves)


def check_stock(facts: Facts, initial: dict[str, int], report: Report) -> dict[str, int]:
    reserved: Counter[str] = Counter()
    sold: Counter[str] = Counter()
    for oid, row in facts.orders.items():
        for item in facts.items.get(oid, []):
            if row["status"] == "pending_payment":
                reserved[item["variant_id"]] += item["quantity"]
            elif row["status"] == "paid":
                sold[item["variant_id"]] += item["quantity"]
    surplus = deficit = negative = 0
    for vid, start in initial.items():
        on_hand = facts.variants.get(vid)
        if on_hand is None:
            report.add("stock_variant_missing", variant_id=vid)
            continue
        if on_hand < 0:
            negative += 1
            report.add("negative_stock", variant_id=vid, on_hand=on_hand)
        balance = on_hand + reserved[vid] + sold[vid]
        if balance != start:
            report.add(
                "stock_not_conserved",
                variant_id=vid,
                initial=start,
                on_hand=on_hand,
                reserved=reserved[vid],
                sold=sold[vid],
                difference=balance - start,
            )
            surplus += max(0, balance - start)
            deficit += max(0, start - balance)
    return {
        "surplus_units": surplus,
        "missing_units": deficit,
        "negative_variants": negative,
        "sold_units": sum(sold.values()),
        "reserved_units": sum(reserved.values()),
    }


def check_money(facts: Facts, report: Report, faults: Sequence[Fault] = ()) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for oid, row in facts.orders.items():
        attempts = facts.payments.get(oid, [])
        successes = [p for p in attempts if p["status"] == "success"]
        if row["status"] == "paid" and len(successes) != 1:
            report.add("paid_without_one_success", order_id=oid, successes=len(successes))
        if row["status"] != "paid" and successes:
            report.add("success_on_unpaid_order", order_id=oid, status=row["status"])
        deadline = row["expires_at"].timestamp()
        for p in attempts:
            txn = facts.ledger.get((p["gateway"], p["gateway_order_id"]))
            took_money = txn is not None and txn["state"] == "paid"
            where = {"order_id": oid, "gateway": p["gateway"], "gateway_order_id": p["gateway_order_id"]}
            if not took_money:
                continue
            assert txn is not None  # took_money says so
            counts["verified_payments"] += 1
            counts[f"attempt_{p['status']}"] += 1
            if p["status"] not in HOLDS_MONEY or (p["status"] == "success" and row["status"] != "paid"):
                report.add(
                    "money_unaccounted",
                    **where,
                    attempt_status=p["status"],
                    order_status=row["status"],
                    paid_at=txn["finished_at"],
                    ended_at=row["ended_at"].isoformat() if row["ended_at"] else None,
                    late_workflow=facts.late_workflows.get(
                        late_workflow_id(p["gateway"], p["gateway_order_id"])
                    ),
                    cause=_unsettled_cause(
                        facts.success_inbox.get((p["gateway"], p["gateway_order_id"]), [])
                    ),
                )
            paid_at = _ts(txn["finished_at"])
            # A gateway silent at the deadline cannot hold the window past the grace: money it took
            # in time may then end on an expired order, found afterwards and refunded (checked above).
            blind = any(
                g == p["gateway"] and start <= deadline + LATE_CLOSE_S and end >= deadline - 10
                for g, start, end in faults
            )
            if row["status"] == "expired" and paid_at is not None and paid_at < deadline - MARGIN_S and blind:
                counts["paid_in_window_expired_gateway_silent"] += 1
            elif row["status"] == "expired" and paid_at is not None and paid_at < deadline - MARGIN_S:
                report.add(
                    "paid_in_window_but_expired",
                    **where,
                    paid_at=txn["finished_at"],
                    deadline=row["expires_at"].isoformat(),
                )
            # Money without a row, rows without money, refunds twice or of kept money: the ledger walk.
            if p["status"] == "refund_required" and p["gateway"] != "payos":
                # MoMo and VNPay refund through their API; PayOS has none (left to an operator).
                report.add(
                    "refund_not_done",
                    **where,
                    late_workflow=facts.late_workflows.get(
                        late_workflow_id(p["gateway"], p["gateway_order_id"])
                    ),
                )
    for wid, status in facts.late_workflows.items():
        counts[f"late_workflow_{status.lower()}"] += 1
        if status not in ("COMPLETED", "missing"):  # a missing one shows as money_unaccounted
            report.add("late_workflow_not_completed", workflow_id=wid, status=status)
    # Success notifications never marked delivered: for settled attempts (late payments take that
    # path) only bookkeeping; for any other attempt money nobody acted on (counted above as well).
    settled = {
        (p["gateway"], p["gateway_order_id"])
        for ps in facts.payments.values()
        for p in ps
        if p["status"] in SETTLED_MONEY
    }
    loose = [
        r
        for r in facts.undelivered_inbox
        if r["outcome"] == "success" and (r["gateway"], r["gateway_order_id"]) not in settled
    ]
    counts["inbox_undelivered"] = len(facts.undelivered_inbox)
    counts["inbox_undelivered_unsettled_success"] = len(loose)
    return dict(counts)


def _unsettled_cause(delivered: list[bool]) -> str:
    if not delivered:
        return "no_notification_taken: the API never stored the gateway's success"
    if any(delivered):
        return (
            "signal_ignored: the success was signalled to the order's workflow after its terminal "
            "transition and before it completed; the workflow dropped it"
        )
    return (
        "signal_undelivered: the success is in the inbox, the signal failed (Temporal unreachable) after "
        "the workflow had completed; the webhook still answered 2xx and nothing reads the inbox again"
    )


def check_workflows(facts: Facts, grace_s: float, bound_s: float, report: Report) -> int:
    stuck = 0
    running = set(facts.running_order_workflows)
    for oid, row in facts.orders.items():
        overdue = facts.now > row["expires_at"].timestamp() + grace_s + bound_s
        wf_status = facts.workflows.get(workflow_id(oid), (None, None))[0]
        closed = wf_status.name if wf_status not in (None, WorkflowExecutionStatus.RUNNING) else None
        if workflow_id(oid) in running and (
            overdue or (row["ended_at"] and facts.now > row["ended_at"].timestamp() + bound_s)
        ):
            stuck += 1
            report.add(
                "stuck_workflows",
                order_id=oid,
                status=row["status"],
                expires_at=row["expires_at"].isoformat(),
            )
        elif row["status"] == "pending_payment" and closed is not None:
            stuck += 1
            report.add(
                "stuck_workflows",
                order_id=oid,
                status=row["status"],
                why=f"pending in Postgres, its workflow is {closed}: nothing will end it",
            )
        elif row["status"] == "pending_payment" and overdue:
            stuck += 1
            report.add(
                "stuck_workflows",
                order_id=oid,
                status=row["status"],
                why="pending in Postgres past its bound",
            )
    for wid, (status, started) in facts.workflows.items():
        oid = wid.removeprefix("order-")
        orphan = oid not in facts.orders and status == WorkflowExecutionStatus.RUNNING and started is not None
        if orphan and facts.now > started.timestamp() + bound_s:
            stuck += 1
            report.add("stuck_workflows", workflow_id=wid, why="running without an order row")
    return stuck


def check_on_time(facts: Facts, grace_s: float, outages: list[tuple[float, float]], report: Report) -> int:
    """No order ends later than deadline + grace + LATE_CLOSE_S, whatever optional effects do. Only an
    outage of what an order's end needs (Postgres, Temporal, the workers) moves that bound: to the
    outage's end."""
    late = 0
    for oid, row in facts.orders.items():
        due = row["expires_at"].timestamp() + grace_s
        for start, end in sorted(outages):
            if start - LATE_CLOSE_S <= due <= end:
                due = max(due, end)
        ended = row["ended_at"].timestamp() if row["ended_at"] else None
        if (ended if ended is not None else facts.now) > due + LATE_CLOSE_S:
            late += 1
            report.add(
                "late_closes",
                order_id=oid,
                status=row["status"],
                late_by_s=round((ended or facts.now) - due, 1),
                end_reason=row["end_reason"],
            )
    return late


def check_events(facts: Facts, report: Report) -> int:
    """Every order event reached the receiver once it was back (receivers deduplicate on the id)."""
    missing = 0
    for event in facts.events:
        if event["delivered_at"] is None or event["id"] not in facts.received_events:
            missing += 1
            report.add(
                "events_undelivered_after_recovery",
                order_id=event["order_id"],
                type=event["type"],
                tries=event["attempts"],
                delivered=event["delivered_at"] is not None,
            )
    return missing


def check_history(facts: Facts, report: Report) -> dict[str, Any]:
    lengths = sorted(facts.history_lengths.values())
    for wid, n in facts.history_lengths.items():
        if n > HISTORY_BOUND:
            report.add("history_growth", workflow_id=wid, history_events=n)
    return {
        "max_history_events": lengths[-1] if lengths else None,
        "history_events_p50": lengths[len(lengths) // 2] if lengths else None,
    }


def _pct(values: list[float], q: float) -> float | None:
    return round(values[min(len(values) - 1, int(len(values) * q))], 1) if values else None


def lag_figures(facts: Facts) -> dict[str, Any]:
    """Deadline -> terminal, for orders the window closed (expired)."""
    lags = sorted(
        (row["ended_at"] - row["expires_at"]).total_seconds()
        for row in facts.orders.values()
        if row["status"] == "expired" and row["ended_at"] is not None
    )
    if not lags:
        return {}
    return {
        "expired_lag_p50_s": round(statistics.median(lags), 2),
        "expired_lag_p99_s": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 2),
        "expired_lag_max_s": round(lags[-1], 2),
    }


async def gather_ledger(
    pg_dsn: str,
    record: dict[str, list[dict[str, Any]]],
    desk: list[dict[str, Any]],
    customers: list[str] | None,
    started: datetime | None = None,
) -> LedgerReport:
    """Our side of the ledger walk, and the part of the record it judges. With `customers` (one
    scenario's): the gateway payments of their rows, and those made since `started` that no row of
    ours names at all, each with its whole history (a late refund may land after the scenario).
    Without (the end of the run): everything. Also the operators' hand refunds of those payments,
    what the desk listed of them (its API's answer, `desk`), and the orders that ended
    payment_link_unavailable."""
    recent = since(record, started) if started is not None else record
    fresh = keys_of(recent)
    gateways, gids = [k[0] for k in fresh], [k[1] for k in fresh]
    scope = "(o.customer_id = ANY($1::text[]) OR $1::text[] IS NULL)"
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            f"""
            SELECT p.id::text AS payment_id, p.gateway, p.gateway_order_id, p.status, p.amount,
                   p.received_amount, o.status AS order_status, o.id::text AS order_id, o.order_code,
                   {scope} AS ours
            FROM payment p JOIN "order" o ON o.id = p.order_id
            WHERE {scope} OR (p.gateway, p.gateway_order_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))
            """,
            customers,
            gateways,
            gids,
        )
        rows = [r for r in rows if r["ours"]]  # another scenario's payment is judged in its own walk
        hand = await conn.fetch(
            "SELECT p.gateway, p.gateway_order_id, a.at, coalesce(p.received_amount, p.amount) AS amount "
            "FROM audit_log a JOIN payment p ON p.id = a.payment_id "
            "WHERE a.action = 'payment.mark_refunded' AND a.payment_id = ANY($1::uuid[])",
            [r["payment_id"] for r in rows],
        )
        failed = await conn.fetch(
            f'SELECT o.id::text AS id, o.order_code FROM "order" o '
            f"WHERE o.end_reason = 'payment_link_unavailable' AND {scope}",
            customers,
        )
        named = await conn.fetch(
            "SELECT DISTINCT gateway, gateway_order_id FROM payment "
            "WHERE (gateway, gateway_order_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            gateways,
            gids,
        )
    finally:
        await conn.close()
    keys = {(r["gateway"], r["gateway_order_id"]) for r in rows}
    keys |= fresh - {(n["gateway"], n["gateway_order_id"]) for n in named}  # money no row of ours names
    codes = {r["order_code"] for r in rows} | {f["order_code"] for f in failed}

    def mine(e: dict[str, Any]) -> bool:
        return (e["gateway"], str(e["gatewayOrderId"])) in keys

    scoped = {
        "transfers": [e for e in record.get("transfers", []) if mine(e)],
        "refunds": [e for e in record.get("refunds", []) if mine(e)],
        "creates": [
            e
            for e in record.get("creates", [])
            if order_code_of(e["gateway"], str(e["gatewayOrderId"])) in codes
        ],
        "queries": [e for e in recent.get("queries", []) if mine(e)],
    }
    payments = [
        OurPayment(
            gateway=r["gateway"],
            gateway_order_id=r["gateway_order_id"],
            status=r["status"],
            amount=r["amount"],
            received_amount=r["received_amount"],
            order_status=r["order_status"],
            order_id=r["order_id"],
        )
        for r in rows
    ]
    listed = [
        OurPayment(
            gateway=d["gateway"],
            gateway_order_id=d["gatewayOrderId"],
            status=d["status"],
            amount=d["amount"],
            received_amount=d.get("receivedAmount"),
            order_status=d.get("orderStatus", ""),
        )
        for d in desk
        if (d["gateway"], d["gatewayOrderId"]) in keys
    ]
    return walk(
        scoped,
        payments,
        hand_refunds=[
            HandRefund(h["gateway"], h["gateway_order_id"], h["at"].isoformat(), h["amount"]) for h in hand
        ],
        desk=listed,
        link_failures=[LinkFailure(f["id"], f["order_code"]) for f in failed],
    )


LEDGER_CHECKS = (
    "ledger_mismatches",
    "double_refunds",
    "manual_refund_invitations_for_returned_money",
    "unconfirmed_link_failures",
)


def check_ledger(ledger: LedgerReport, report: Report) -> dict[str, Any]:
    for name in LEDGER_CHECKS:
        for item in getattr(ledger, name):
            report.add(name, **item)
    return {**ledger.counts(), **ledger.figures}


def check_all(
    facts: Facts,
    records: list[OrderRecord],
    initial: dict[str, int],
    grace_s: float,
    bound_s: float,
    outages: list[tuple[float, float]] | None = None,
    faults: list[Fault] | None = None,
    ledger: LedgerReport | None = None,
) -> Report:
    report = Report()
    money_ledger = check_ledger(ledger, report) if ledger is not None else None
    check_orders(facts, records, report)
    check_terminal(facts, records, report, faults or [])
    stock = check_stock(facts, initial, report)
    money = check_money(facts, report, faults or [])
    stuck = check_workflows(facts, grace_s, bound_s, report)
    late = check_on_time(facts, grace_s, outages or [], report)
    undelivered = check_events(facts, report)
    history = check_history(facts, report)
    statuses = Counter(row["status"] for row in facts.orders.values())
    by_id = {rec.order_id: rec for rec in records}
    link_failed = Counter(
        by_id[oid].plan.gateway if oid in by_id else "?"
        for oid, row in facts.orders.items()
        if row["end_reason"] == "payment_link_unavailable"
    )
    link_failures = sum(link_failed.values())
    if link_failures:
        report.findings.append(
            f"{link_failures} orders ended `failed` (payment_link_unavailable) although the gateways "
            "were up, "
            f"by gateway {dict(link_failed)}"
        )
    creates = Counter(o for rec in records for o in rec.creates)
    first_try_ms = sorted(
        rec.create_ms for rec in records if rec.create_ms is not None and len(rec.creates) == 1
    )
    vnpay_declines_expired = sum(
        1
        for rec in records
        if rec.plan.kind == "decline"
        and rec.plan.gateway == "vnpay"
        and facts.orders.get(rec.order_id, {}).get("status") == "expired"
    )
    if vnpay_declines_expired:
        report.findings.append(
            f"{vnpay_declines_expired} VNPay declines ended `expired`, not `cancelled`: their IPN could "
            "not be taken before the deadline, and querydr reports a decline as TransactionStatus 02 "
            "(like a failure)"
        )
    report.figures = {
        "keys": len(records),
        "orders": len(facts.orders),
        "statuses": dict(statuses),
        "plans": dict(Counter(rec.plan.kind for rec in records)),
        "create_answers": dict(creates),
        "create_p50_ms": _pct(first_try_ms, 0.5),
        "create_p99_ms": _pct(first_try_ms, 0.99),
        "creates_retried": sum(1 for rec in records if len(rec.creates) > 1),
        "creates_given_up": sum(1 for rec in records if rec.gave_up),
        "creates_refused": dict(Counter(rec.rejected for rec in records if rec.rejected)),
        "shopper_errors": sum(1 for rec in records if rec.error),
        "stock": stock,
        "money": money,
        "ledger": money_ledger,
        "stuck_workflows": stuck,
        "workflows_failed": len(report.violations.get("workflows_failed", [])),
        "late_closes": late,
        "money_unaccounted": len(report.violations.get("money_unaccounted", [])),
        "events": len(facts.events),
        "events_undelivered_after_recovery": undelivered,
        **history,
        "link_failures": link_failures,
        **lag_figures(facts),
    }
    return report
