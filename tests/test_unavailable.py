"""The pieces, in isolation: telling "a dependency is down, retry" (503) apart from a bug (500), and
`while_unavailable`'s bounded wait. The claim itself (a real Postgres crash and restart on the real
stack: 503 DATABASE_UNAVAILABLE, links made once it is back, windows closed right) is proven by
tests/test_outage.py."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
import sqlalchemy.exc
from fastapi import FastAPI
from temporalio.service import RPCError, RPCStatusCode

from api.errors import on_unexpected
from infra.db import db_unavailable, while_unavailable

SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")  # on the async tests only


def wrapped(err: BaseException, invalidated: bool = False) -> sqlalchemy.exc.DBAPIError:
    """What SQLAlchemy raises around an asyncpg error."""
    outer = sqlalchemy.exc.DBAPIError("SELECT 1", {}, err, connection_invalidated=invalidated)
    outer.__cause__ = err
    return outer


@pytest.mark.parametrize(
    ("err", "down"),
    [
        (ConnectionRefusedError(111, "refused"), True),
        (FileNotFoundError(2, "No such file or directory"), True),  # the unix socket is gone
        (wrapped(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")), True),
        (wrapped(asyncpg.exceptions.CannotConnectNowError("the database system is starting up")), True),
        (wrapped(asyncpg.exceptions.AdminShutdownError("terminating connection")), True),
        (wrapped(RuntimeError("x"), invalidated=True), True),
        (sqlalchemy.exc.TimeoutError("QueuePool limit reached"), True),
        (wrapped(asyncpg.exceptions.UndefinedColumnError("column x does not exist")), False),
        (wrapped(asyncpg.exceptions.UniqueViolationError("duplicate key")), False),
        (ValueError("bad"), False),
    ],
)
def test_db_unavailable_tells_down_from_wrong(err: BaseException, down: bool) -> None:
    assert db_unavailable(err) is down


def raiser(err: BaseException):
    async def route() -> None:
        raise err

    return route


@SESSION_LOOP
async def test_unexpected_errors_from_a_dependency_that_is_down_answer_503() -> None:
    app = FastAPI()
    app.add_exception_handler(Exception, on_unexpected)
    raised = {
        "/db": wrapped(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")),
        "/temporal": RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b""),
        "/bug": KeyError("oops"),
    }
    for path, err in raised.items():
        app.add_api_route(path, raiser(err))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        db, temporal, bug = [await http.get(p) for p in raised]
    assert (db.status_code, db.json()["error"], db.headers["retry-after"]) == (
        503,
        "DATABASE_UNAVAILABLE",
        "1",
    )
    assert (temporal.status_code, temporal.json()["error"]) == (503, "TEMPORAL_UNAVAILABLE")
    assert (bug.status_code, bug.json()["error"]) == (500, "INTERNAL_ERROR")


@SESSION_LOOP
async def test_while_unavailable_waits_out_a_restart_but_not_a_bug() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError(111, "refused")
        return "ok"

    assert await while_unavailable(flaky, budget_s=5) == "ok" and calls == 3

    async def wrong() -> None:
        raise wrapped(asyncpg.exceptions.UndefinedColumnError("column x does not exist"))

    with pytest.raises(sqlalchemy.exc.DBAPIError):
        await while_unavailable(wrong, budget_s=5)

    async def down() -> None:
        raise ConnectionRefusedError(111, "refused")

    started = asyncio.get_running_loop().time()
    with pytest.raises(ConnectionRefusedError):
        await while_unavailable(down, budget_s=0.5)
    assert (
        asyncio.get_running_loop().time() - started < 2
    )  # bounded: the activity's own timeout stays the cap
