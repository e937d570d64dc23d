"""The fast tier's own server: the time-skipping test server, nothing else. The fixtures of
tests/conftest.py (Postgres, the dev server, the API) start only when a test asks for them, and
no test here does."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from domain.search import ALL as SEARCH_ATTRIBUTES
from infra.temporal import DATA_CONVERTER
from tests.fast.world import World
from workflows.archive import ArchiveWorkflow
from workflows.late_payment import LatePaymentWorkflow
from workflows.order import OrderWorkflow
from workflows.refund import RefundWorkflow


@pytest.fixture(scope="session")
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=DATA_CONVERTER,
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                k.name: IndexedValueType.ValueType(k.indexed_value_type) for k in SEARCH_ATTRIBUTES
            },
        )
    )
    yield env
    await env.shutdown()


@pytest.fixture
async def world(skipping: WorkflowEnvironment) -> AsyncIterator[World]:
    """A fresh fake world and a worker (sandboxed, so non-determinism fails) on its own task queue."""
    w = World(skipping)
    async with Worker(
        skipping.client,
        task_queue=w.queue,
        workflows=[OrderWorkflow, LatePaymentWorkflow, RefundWorkflow, ArchiveWorkflow],
        activities=w.activities(),
        workflow_runner=SandboxedWorkflowRunner(),
    ):
        yield w
        await w.stop()
