"""The one place a Temporal client is made, so the API, the worker and tests agree on the
namespace and the data converter (pydantic: dataclasses with datetimes round-trip exactly), and the
one client-side start both of them make (a late payment's settlement)."""

from __future__ import annotations

import dataclasses
import functools
import logging

from pydantic import TypeAdapter
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.contrib.pydantic import (
    PydanticJSONPlainPayloadConverter,
    PydanticPayloadConverter,
    pydantic_data_converter,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from domain.ids import late_workflow_id
from domain.messages import LatePayment
from domain.verdicts import PER_TRANSFER
from infra.settings import Settings
from infra.tracing import temporal_interceptors

log = logging.getLogger(__name__)

# The SDK builds a payload converter for every workflow instance, each with an empty TypeAdapter
# cache: every order rebuilt the adapters of its messages (~12 % of the worker's CPU). One cache
# per process instead; keyed by the class, so sandboxed instances (fresh classes) still get their own.
_ADAPTERS = functools.lru_cache(maxsize=1024)(TypeAdapter)


class SharedAdaptersPayloadConverter(PydanticPayloadConverter):
    def __init__(self) -> None:
        super().__init__()
        for converter in self.converters.values():
            if isinstance(converter, PydanticJSONPlainPayloadConverter):
                converter._type_adapter = _ADAPTERS  # the SDK's own cache slot


DATA_CONVERTER = dataclasses.replace(
    pydantic_data_converter, payload_converter_class=SharedAdaptersPayloadConverter
)


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    if not settings.temporal_address:
        raise RuntimeError("TEMPORAL_ADDRESS is not set (make dev sets it for the embedded dev server)")
    tls: TLSConfig | bool = bool(settings.temporal_api_key)
    if settings.temporal_tls_cert and settings.temporal_tls_key:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
        tls=tls,
        api_key=settings.temporal_api_key,
        runtime=runtime,
        interceptors=temporal_interceptors(),  # none while tracing is off; workers inherit the client's
    )


def late_transfer(late: LatePayment) -> str | None:
    """What identifies late money beyond its attempt: a PayOS transfer's reference (every transfer
    to an ended order's link is settled, each once); None for a gateway with one payment per attempt."""
    return late.transaction_id if late.gateway in PER_TRANSFER else None


async def start_late_settlement(client: Client, task_queue: str, late: LatePayment) -> None:
    """The one place a late payment's settlement starts (the webhook, once the order's workflow has
    finished; the order's workflow, through an activity): one LatePaymentWorkflow per attempt (per
    transfer for PayOS), so however often the money is reported, it is settled once."""
    try:
        await client.start_workflow(
            "LatePaymentWorkflow",  # by name: infra imports no workflow module
            late,
            id=late_workflow_id(late.gateway, late.gateway_order_id, late_transfer(late)),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return  # settled already
    log.error("late payment for order %s via %s %s", late.order_id, late.gateway, late.gateway_order_id)
