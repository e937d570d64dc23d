"""The sandbox's switches and its ledger: POST/GET/DELETE /faults, GET /ledger (docs/GATEWAYS.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request

from devstack.sandbox.state import SandboxStore
from devstack.sandbox.web import json_body


def control_routes(store: SandboxStore) -> APIRouter:
    router = APIRouter(tags=["sandbox: faults and ledger"])

    @router.post("/faults")
    async def set_faults(request: Request) -> dict[str, Any]:
        try:
            store.faults.replace(await json_body(request))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return store.faults.as_json()

    @router.get("/faults")
    async def get_faults() -> dict[str, Any]:
        return store.faults.as_json()

    @router.delete("/faults")
    async def clear_faults() -> dict[str, Any]:
        store.faults.clear()
        return store.faults.as_json()

    @router.get("/ledger")
    async def ledger() -> dict[str, Any]:
        return store.ledger.as_json()

    return router
