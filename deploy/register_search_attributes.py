"""Register OrderWorkflow's search attributes on a Temporal namespace, idempotently.

docker-compose runs it once before the worker starts; against another self-hosted cluster run it
once per namespace. The list is domain/search.py's, so the workflow and this script cannot
disagree. Reads only TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE (not Settings, so it needs no app
secrets). Waits up to REGISTER_WAIT_SECONDS (120) for the server and the namespace. Exit 1 when an
attribute exists with another type (fix it by hand: the workflow would fail to upsert it).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.search import ALL


async def existing(client: Client, namespace: str) -> dict[str, IndexedValueType.ValueType]:
    request = ListSearchAttributesRequest(namespace=namespace)
    resp = await client.operator_service.list_search_attributes(request)
    return dict(resp.custom_attributes)


class Conflict(Exception):
    """An attribute exists with another type than the workflow upserts."""


async def register(client: Client, namespace: str) -> list[str]:
    """Add what is missing; returns the names added. Raises Conflict on a type mismatch."""
    wanted = {key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in ALL}  # an int, typed
    have = await existing(client, namespace)
    conflicts = [
        f"{name} is {IndexedValueType.Name(have[name])}, the workflow needs {IndexedValueType.Name(kind)}"
        for name, kind in wanted.items()
        if name in have and have[name] != kind
    ]
    if conflicts:
        raise Conflict("; ".join(conflicts))
    missing = {name: kind for name, kind in wanted.items() if name not in have}
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(search_attributes=missing, namespace=namespace)
            )
        except RPCError as err:
            # Another runner won the race (servers answer ALREADY_EXISTS or INVALID_ARGUMENT).
            if "already exists" not in str(err).lower():
                raise
            return await register(client, namespace)
    return sorted(missing)


async def main() -> int:
    address = os.environ.get("TEMPORAL_ADDRESS", "temporal:7233")
    namespace = os.environ.get("TEMPORAL_NAMESPACE", "default")
    deadline = time.monotonic() + float(os.environ.get("REGISTER_WAIT_SECONDS", "120"))
    while True:
        try:
            client = await Client.connect(address, namespace=namespace)
            await existing(client, namespace)  # NOT_FOUND until auto-setup has created the namespace
            break
        except (RPCError, RuntimeError) as err:
            retryable = not isinstance(err, RPCError) or err.status in (
                RPCStatusCode.NOT_FOUND,
                RPCStatusCode.UNAVAILABLE,
                RPCStatusCode.DEADLINE_EXCEEDED,
            )
            if not retryable or time.monotonic() > deadline:
                print(f"Temporal at {address}, namespace {namespace!r} not usable: {err}", file=sys.stderr)
                return 1
            print(f"waiting for Temporal at {address}, namespace {namespace!r}: {err}", file=sys.stderr)
            await asyncio.sleep(2)
    try:
        added = await register(client, namespace)
    except Conflict as err:
        print(f"search attribute type conflict in {namespace!r}: {err}", file=sys.stderr)
        return 1
    print(f"namespace {namespace!r}: added {added or 'nothing'}; present: {[key.name for key in ALL]}")
    return 0


if __name__ == "__main__":
    code = asyncio.run(main())
    # Skip interpreter finalisation: after a failed connect the SDK's native threads can crash it
    # (abort, exit 134), which would hide our exit code.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
