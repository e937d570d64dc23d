"""The one place a Temporal client is made, so the API, the worker and tests agree on the
namespace and the data converter (pydantic: dataclasses with datetimes round-trip exactly)."""

from __future__ import annotations

import dataclasses
import functools

from pydantic import TypeAdapter
from temporalio.client import Client
from temporalio.contrib.pydantic import (
    PydanticJSONPlainPayloadConverter,
    PydanticPayloadConverter,
    pydantic_data_converter,
)
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from domain.settings import Settings

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


DATA_CONVERTER = dataclasses.replace(pydantic_data_converter, payload_converter_class=SharedAdaptersPayloadConverter)


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
    )


def workflow_id(order_id: str) -> str:
    return f"order-{order_id}"


def late_workflow_id(gateway: str, gateway_order_id: str) -> str:
    """One late-payment settlement per attempt."""
    return f"late-{gateway}-{gateway_order_id}"
