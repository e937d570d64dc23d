"""The layers import one way (docs/ARCHITECTURE.md):

    api             ->  services  ->  store, gateways  ->  infra  ->  domain
    worker.py       ->  activities  ->  store, gateways  ->  infra  ->  domain
    workflows       ->  domain (and workflows/steps.py, the steps' declarations)
    devstack, bench, chaos, tests  ->  anything (the tooling; the product never imports it)

`domain/` is the pure core: no I/O library, nothing of ours but itself. `workflows/` never
imports an I/O library, an adapter, the store or an activity. `services/` (the application
services) never import the web framework or `api/`; `api/` never imports the store, a workflow
or an activity: it reaches them through a service. Only `store/` speaks SQL. The gateway sandbox
is dev tooling (devstack/sandbox/): `make dev` and the tests mount it (devstack/app.py), the product
cannot reach it. Read from the source (ast), so a lazy import inside a function counts.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import typing
from pathlib import Path

import httpx
import pytest

from workflows import steps

ROOT = Path(__file__).resolve().parent.parent
OURS = {
    "api",
    "services",
    "activities",
    "domain",
    "gateways",
    "infra",
    "store",
    "workflows",
    "worker",
    "devstack",
    "bench",
    "chaos",
    "tests",
}
# The product: what the image carries and runs. Everything else of ours is tooling.
PRODUCT = ("api", "services", "activities", "gateways", "infra", "store", "domain", "workflows", "worker.py")
TOOLING = {"devstack", "bench", "chaos", "tests"}
IO = {
    "sqlalchemy",
    "sqlmodel",
    "asyncpg",
    "httpx",
    "fastapi",
    "starlette",
    "uvicorn",
    "payos",
    "smtplib",
    "alembic",
}
# What each layer may import of ours, and which outside libraries it must not.
MAY_IMPORT: dict[str, set[str]] = {
    "domain": {"domain"},
    "infra": {"infra", "domain"},
    "store": {"store", "infra", "domain"},
    "gateways": {"gateways", "infra", "domain"},
    "activities": {"activities", "store", "gateways", "infra", "domain"},
    "workflows": {"workflows", "domain"},
    "services": {"services", "store", "gateways", "infra", "domain", "workflows"},
    "api": {"api", "services", "gateways", "infra", "domain"},
}
# Where api/ may read the store all the same, and why.
API_READS_STORE = {
    # The Prometheus text rendering (an HTTP format) of the snapshot the store computes: its
    # dataclasses are the input, the service (services/stats.py) runs the query.
    "api/metrics.py": {"store.stats"},
}
FORBIDDEN_LIBRARIES: dict[str, set[str]] = {
    "domain": IO | {"temporalio.client", "temporalio.worker", "temporalio.activity", "pydantic_settings"},
    "workflows": IO,
    "services": {"fastapi", "starlette", "uvicorn"},
}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    wrong = []
    for path in modules(layer):
        for name in imports(path):
            top = name.split(".")[0]
            excused = any(
                name == m or name.startswith(f"{m}.")
                for m in API_READS_STORE.get(str(path.relative_to(ROOT)), ())
            )
            if top in OURS and top not in MAY_IMPORT[layer] and not excused:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
            if any(name == lib or name.startswith(f"{lib}.") for lib in FORBIDDEN_LIBRARIES.get(layer, ())):
                wrong.append(f"{path.relative_to(ROOT)} imports the I/O library {name}")
    assert not wrong, "\n".join(sorted(set(wrong)))


def product_modules() -> list[Path]:
    return [p for part in PRODUCT for p in ([ROOT / part] if part.endswith(".py") else modules(part))]


def test_the_product_never_imports_the_tooling() -> None:
    """The image has no devstack/ (the sandbox included), bench/, chaos/ or tests/."""
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in product_modules()
        for name in imports(path)
        if name.split(".")[0] in TOOLING
    ]
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_the_sandbox_lives_in_the_dev_tooling_and_only_the_dev_app_serves_it() -> None:
    from api.app import create_app
    from devstack.app import create_dev_app
    from infra.settings import Settings

    assert (ROOT / "devstack" / "sandbox" / "__init__.py").is_file()
    assert not [p for part in PRODUCT[:-1] for p in (ROOT / part).rglob("sandbox*")], (
        "a sandbox in the product"
    )
    settings = Settings(_env_file=None, sandbox_enabled=True, public_base_url="http://127.0.0.1:8123")

    async def ledger(app: typing.Any) -> int:  # the sandbox's own record: in memory, no lifespan needed
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            return (await http.get("/sandbox/ledger")).status_code

    assert asyncio.run(ledger(create_app(settings))) == 404  # SANDBOX_ENABLED=true all the same
    assert asyncio.run(ledger(create_dev_app(settings))) == 200


def test_only_the_store_speaks_sql() -> None:
    speaking = []
    for layer in ("api", "services", "activities", "workflows", "gateways", "infra", "domain"):
        for path in modules(layer):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", getattr(node.func, "attr", "")) == "text"
                ):
                    speaking.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not speaking, f"SQL outside store/: {speaking}"


def test_every_step_a_workflow_names_is_implemented_with_the_same_types() -> None:
    """workflows/steps.py declares; activities/ implement, under the same name and types."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from worker import all_activities

    declared = {
        fn.__temporal_activity_definition.name: fn
        for fn in vars(steps).values()
        if hasattr(fn, "__temporal_activity_definition")
    }
    never_connected = create_async_engine("postgresql+asyncpg://layers@localhost/none")
    implemented = {
        fn.__temporal_activity_definition.name: fn
        for fn in all_activities(never_connected, _settings(), None)  # type: ignore[arg-type]
    }
    assert declared, "no steps declared"
    assert set(declared) <= set(implemented), set(declared) - set(implemented)
    for name, stub in declared.items():
        want = typing.get_type_hints(stub)
        got = typing.get_type_hints(implemented[name])
        assert want == got, f"{name}: declared {want}, implemented {got}"
        assert [p for p in inspect.signature(stub).parameters] == [
            p for p in inspect.signature(implemented[name]).parameters
        ], name


def _settings() -> typing.Any:
    from infra.settings import Settings

    return Settings()
