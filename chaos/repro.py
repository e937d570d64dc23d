"""`python -m chaos.repro`: step-by-step reproductions of the core bugs the chaos run found
(docs/RELIABILITY.md, "Findings"), on the real stack (chaos/stack.py), one order each, printing what
every party holds afterwards. All four were fixed on 2026-11-23, so this is now a regression check:
exit 0 when none of them reproduces.

  late_signal_dropped   the success arrives while OrderWorkflow is finishing (after its terminal
                        transition, before it completes): the signal is accepted by Temporal and
                        ignored by the workflow, the webhook answered 204, nothing settles it
  temporal_down         the success arrives after the workflow completed, while Temporal is down:
                        the signal times out, the webhook still answers 204, the inbox row stays
                        undelivered and nothing settles it
  payos_link_retry      the activity that makes a payment link, retried after its first try made
                        the PayOS link but died before writing the payment row (a worker SIGKILL):
                        PayOS answers 231 "orderCode already exists" to every retry, so the order
                        ends `failed` (payment_link_unavailable). Runs the real activity code twice.
  gateway_down_at_create
                        the gateway cannot make the first link (its process is down): the order
                        must end `failed` (payment_link_unavailable) with its stock back. Since the
                        critical-path effects became local activities (workflow.patched
                        "local-effects-v1"), their failure reaches the workflow as an ApplicationError,
                        not the ActivityError `run` catches: the workflow execution FAILS and the
                        order stays pending_payment with its stock reserved, for ever.

The worker is frozen with SIGSTOP (not killed) for the first one, so no timeout is involved: the
only requirement is to freeze it between the transition and the completion, which this tries up
to five times.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from chaos.load import OrderRecord, Plan, Shoppers
from chaos.scenarios import STACK_ENV, WINDOW
from chaos.stack import ChaosStack
from domain.ids import late_workflow_id, workflow_id
from domain.statuses import SETTLED_MONEY

REPRODUCED = "REPRODUCED: the gateway holds the money, nothing will refund it"


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


class Repro:
    def __init__(self, stack: ChaosStack) -> None:
        self.stack = stack
        self.shoppers = Shoppers(stack.api_url, stack.jwt_secret, create_give_up_s=60)
        self.variant = ""

    async def setup(self) -> None:
        self.variant = (await self.shoppers.create_product("Repro", [1000]))[0]

    async def client(self) -> Client:
        return await Client.connect(self.stack.temporal_address, data_converter=pydantic_data_converter)

    async def new_order(self) -> OrderRecord:
        rec = self.shoppers.record(
            "repro", "repro-shopper", Plan("expire", "momo", WINDOW, [(self.variant, 1)])
        )
        assert await self.shoppers.create(rec) is not None, rec.creates
        return rec

    async def order_status(self, order_id: str) -> str:
        conn = await asyncpg.connect(self.stack.database_url)
        try:
            return await conn.fetchval('SELECT status FROM "order" WHERE id = $1', order_id)
        finally:
            await conn.close()

    async def wait_ended(self, order_id: str, poll_s: float) -> str:
        while (status := await self.order_status(order_id)) == "pending_payment":
            await asyncio.sleep(poll_s)
        return status

    async def workflow_status(self, client: Client, order_id: str) -> WorkflowExecutionStatus | None:
        return (await client.get_workflow_handle(workflow_id(order_id)).describe()).status

    async def evidence(self, client: Client, rec: OrderRecord) -> dict[str, Any]:
        gid = rec.attempts[0]["gatewayOrderId"]
        conn = await asyncpg.connect(self.stack.database_url)
        try:
            attempt = await conn.fetchrow(
                "SELECT status, result_code FROM payment WHERE order_id = $1 AND attempt_no = 0", rec.order_id
            )
            inbox = await conn.fetch(
                "SELECT outcome, delivered_at IS NOT NULL AS delivered FROM payment_notification "
                "WHERE order_id = $1",
                rec.order_id,
            )
            order = await conn.fetchrow(
                'SELECT status, late_payment FROM "order" WHERE id = $1', rec.order_id
            )
        finally:
            await conn.close()
        async with httpx.AsyncClient(base_url=self.stack.gateway_url) as gw:
            ledger = {t["id"]: t for t in (await gw.get("/chaos/ledger")).json() if t["gateway"] == "momo"}
            sent = (
                await gw.get("/sandbox/deliveries", params={"gateway": "momo", "transaction_id": gid})
            ).json()
        try:
            late = (await client.get_workflow_handle(late_workflow_id("momo", gid)).describe()).status
            late_status = late.name if late else None
        except RPCError:
            late_status = "none"
        history = await client.get_workflow_handle(workflow_id(rec.order_id)).fetch_history()
        names = [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events]
        tail = [f"{i + 1}:{n}" for i, n in enumerate(names)][-14:]
        return {
            "order": dict(order) if order else None,
            "attempt_0": dict(attempt) if attempt else None,
            "gateway_state": ledger.get(gid, {}).get("state"),
            "webhook_answers": [d["status_code"] for d in sent],
            "inbox": [dict(r) for r in inbox],
            "late_payment_workflow": late_status,
            "order_workflow_last_events": tail,
        }

    # ---- 1: signal into a finishing workflow ------------------------------------------------------------

    async def late_signal_dropped(self) -> bool:
        client = await self.client()
        for attempt in range(1, 6):
            rec = await self.new_order()
            say(
                f"[1] try {attempt}: order {rec.order_id} (MoMo, 6-s window); waiting for it to end "
                "in Postgres"
            )
            status = await self.wait_ended(rec.order_id, poll_s=0.005)
            self.stack.kill("w1", signal.SIGSTOP)  # freeze the worker right after the transition
            frozen_at = time.time()
            try:
                if await self.workflow_status(client, rec.order_id) != WorkflowExecutionStatus.RUNNING:
                    say(f"[1]   order {status}, but its workflow had already completed: try again")
                    continue
                say(f"[1]   order {status} in Postgres, workflow still running, worker frozen (SIGSTOP)")
                click = await self.shoppers.click(rec, 0, "pay", {})
                say(
                    "[1]   shopper pays the MoMo link after the close: gateway answered "
                    f"{click and click.status}"
                )
                handle = client.get_workflow_handle(workflow_id(rec.order_id))
                while not any(
                    e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
                    for e in (await handle.fetch_history()).events
                ):
                    if time.time() - frozen_at > 20:
                        raise RuntimeError("the signal never reached the workflow's history")
                    await asyncio.sleep(0.1)
                say(
                    "[1]   the IPN's payment_result signal is in the workflow's history; "
                    "worker resumed (SIGCONT)"
                )
            finally:
                self.stack.kill("w1", signal.SIGCONT)
            await handle.result()
            await asyncio.sleep(5)  # time for any settlement to start
            proof = await self.evidence(client, rec)
            say("[1]   afterwards: " + json.dumps(proof, default=str))
            lost = (
                proof["gateway_state"] == "paid"
                and proof["attempt_0"]["status"] not in SETTLED_MONEY
                and proof["late_payment_workflow"] == "none"
            )
            say(f"[1]   {REPRODUCED if lost else 'settled'}")
            return lost
        return False

    # ---- 2: Temporal down when the late success arrives ----------------------------------------------------

    async def temporal_down(self) -> bool:
        client = await self.client()
        rec = await self.new_order()
        say(f"[2] order {rec.order_id} (MoMo, 6-s window); waiting until it ended and its workflow completed")
        await self.wait_ended(rec.order_id, poll_s=0.2)
        while await self.workflow_status(client, rec.order_id) != WorkflowExecutionStatus.COMPLETED:
            await asyncio.sleep(0.2)
        self.stack.kill("temporal", signal.SIGKILL)
        say("[2]   Temporal dev server SIGKILLed")
        click = await self.shoppers.click(rec, 0, "pay", {})
        say(f"[2]   shopper pays the MoMo link after the close: gateway answered {click and click.status}")
        await asyncio.sleep(8)  # the API's signal gives up after 5 s
        self.stack.start_temporal()
        say("[2]   Temporal restarted on the same --db-filename; waiting 30 s for the gateway's IPN retries")
        await asyncio.sleep(30)
        client = await self.client()
        proof = await self.evidence(client, rec)
        say("[2]   afterwards: " + json.dumps(proof, default=str))
        lost = (
            proof["gateway_state"] == "paid"
            and proof["attempt_0"]["status"] not in SETTLED_MONEY
            and proof["late_payment_workflow"] == "none"
        )
        say(f"[2]   {REPRODUCED if lost else 'settled'}")
        return lost

    # ---- 3: PayOS link creation is not idempotent -------------------------------------------------------

    async def payos_link_retry(self) -> bool:
        from activities.payments import PaymentActivities
        from domain.messages import FrozenItem, LinkInput
        from gateways.base import GatewayError, LinkItem, LinkRequest
        from gateways.registry import build_gateways
        from infra.db import make_engine
        from infra.settings import Settings

        rec = self.shoppers.record(
            "repro", "repro-shopper", Plan("expire", "payos", "normal", [(self.variant, 1)])
        )
        data = await self.shoppers.create(rec)
        assert data is not None, rec.creates
        # The child's env strings: Settings parses them as it would from the environment.
        env: dict[str, Any] = {
            k.lower(): v for k, v in self.stack.child_env().items() if k.lower() in Settings.model_fields
        }
        settings = Settings(**env)
        engine = make_engine(settings)
        gateways = build_gateways(settings)
        activities = PaymentActivities(engine, gateways, settings, None)  # type: ignore[arg-type]  # no Temporal client: only links are made here
        now = datetime.now(UTC)
        items = [
            FrozenItem(
                str(i["productId"]),
                str(i["variantId"]),
                i["productName"],
                i["variantSku"],
                i["variantName"],
                i["quantity"],
                i["unitPrice"],
                i["subTotalAmount"],
            )
            for i in data["items"]
        ]
        inp = LinkInput(
            rec.order_id,
            data["orderCode"],
            1,
            "payos",
            data["grandTotal"],
            f"Order {data['orderCode']}",
            now,
            now + timedelta(minutes=10),
            items,
        )
        payos = gateways["payos"]
        # First try of attempt 1: the link is made at PayOS, then the worker dies before the INSERT.
        await payos.create_link(
            LinkRequest(
                payos.make_gateway_order_id(inp.order_code, 1),
                f"{inp.order_id}-1",
                inp.amount,
                inp.description,
                now,
                inp.expires_at,
                "http://127.0.0.1/return",
                "http://127.0.0.1/ipn",
                items=tuple(LinkItem(i.product_name, i.quantity, i.unit_price) for i in items),
            )
        )
        say(
            f"[3] order {rec.order_id}: attempt 1's PayOS link made; the worker 'dies' before writing its row"
        )
        try:
            await activities.create_payment_link(inp)  # what Temporal runs on the retry
        except GatewayError as err:
            say(
                f"[3]   the retried activity fails: {err!r}; every retry will (LINK_RETRY: 3 attempts, "
                "then OrderWorkflow ends the order `failed`, payment_link_unavailable)"
            )
            say("[3]   REPRODUCED")
            return True
        finally:
            await engine.dispose()
        say("[3]   the retry succeeded: not reproduced")
        return False

    # ---- 4: the first link cannot be made ------------------------------------------------------------------

    async def gateway_down_at_create(self) -> bool:
        client = await self.client()
        self.stack.kill("gateways", signal.SIGKILL)
        say("[4] the gateways' process is SIGKILLed: no payment link can be made")
        rec = self.shoppers.record(
            "repro", "repro-shopper", Plan("expire", "momo", WINDOW, [(self.variant, 1)])
        )
        self.shoppers.create_give_up_s = 20
        await self.shoppers.create(rec)
        say(f"[4]   POST /orders answered {rec.creates} (README: 502 PAYMENT_GATEWAY_ERROR, order `failed`)")
        await asyncio.sleep(10)
        self.stack.start_gateways()
        status = await self.order_status(rec.order_id)
        try:
            desc = await client.get_workflow_handle(workflow_id(rec.order_id)).describe()
            wf_status = desc.status.name if desc.status else None
        except RPCError:
            wf_status = "none"
        say(f"[4]   10 s later: order {rec.order_id} is {status!r} in Postgres, its workflow is {wf_status}")
        stuck = status == "pending_payment" and wf_status not in ("RUNNING", "none")
        verdict = "REPRODUCED: the order will never end and its stock stays reserved" if stuck else "fine"
        say(f"[4]   {verdict}")
        return stuck


async def main_async(stack: ChaosStack) -> bool:
    repro = Repro(stack)
    try:
        await repro.setup()
        first = await repro.late_signal_dropped()
        second = await repro.temporal_down()
        third = await repro.payos_link_retry()
        fourth = await repro.gateway_down_at_create()
    finally:
        await repro.shoppers.close()
    return not (first or second or third or fourth)


def main() -> int:
    with ChaosStack(STACK_ENV) as stack:
        say(f"stack up: API {stack.api_url}, gateways {stack.gateway_url}")
        try:
            ok = asyncio.run(main_async(stack))
        except KeyboardInterrupt:
            return 130
        finally:
            if stack.alive("w1"):
                stack.kill("w1", signal.SIGCONT)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
