"""The operators' desk (admin only): the audit trail."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api.audit import audit_page
from api.deps import AdminUser, ConnDep
from api.errors import error_responses, ok
from api.schemas import AuditOut, Envelope, Page

router = APIRouter(prefix="/admin", tags=["desk"])
PageNo = Annotated[int, Query(ge=1, le=100_000)]
Size = Annotated[int, Query(ge=1, le=100)]


@router.get("/audit", response_model=Envelope[Page[AuditOut]], responses=error_responses(403))
async def list_audit(
    _: AdminUser,
    conn: ConnDep,
    order_id: Annotated[uuid.UUID | None, Query(alias="orderId")] = None,
    payment_id: Annotated[uuid.UUID | None, Query(alias="paymentId")] = None,
    variant_id: Annotated[uuid.UUID | None, Query(alias="variantId")] = None,
    page: PageNo = 1,
    size: Size = 50,
) -> JSONResponse:
    """The operators' actions, newest first (append-only: Postgres refuses to change them)."""
    return ok(await audit_page(conn, page, size, order_id, payment_id, variant_id))
