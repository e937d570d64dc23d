"""Every recorded release history replays against the current code, for every workflow.

THE RULE. Release 1.0's histories are in tests/histories/release-1.0/. From now on, every change to
the commands a workflow issues (an activity added, removed, reordered, or with other options; a
timer; a search-attribute upsert; a signal or update handled differently) is made under a
`workflow.patched("<new-id>")` branch, the old branch kept, and recorded as a new history:
`RECORD_HISTORIES=<next release> make test` writes NEW files under
tests/histories/release-<release>/<workflow>/ (tests/recorded.py refuses to overwrite one) and
their checksums into tests/histories/SHA256SUMS. A committed history is never changed or deleted
while a workflow started under it may still be running; this test fails when one is.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

import workflows
from infra.temporal import DATA_CONVERTER
from tests.recorded import HISTORIES, checksums, digest
from workflows.archive import ArchiveWorkflow
from workflows.late_payment import LatePaymentWorkflow
from workflows.order import FIRST_LINK_CUT, OrderWorkflow
from workflows.refund import RefundWorkflow

SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")  # on the async tests only
ALL_WORKFLOWS = [OrderWorkflow, LatePaymentWorkflow, RefundWorkflow, ArchiveWorkflow]


def recorded() -> list[str]:
    return sorted(p.relative_to(HISTORIES).as_posix() for p in HISTORIES.glob("release-*/*/*.json"))


def defined_workflows() -> set[type]:
    found = set()
    for info in pkgutil.iter_modules(workflows.__path__):
        module = importlib.import_module(f"workflows.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and hasattr(cls, "__temporal_workflow_definition"):
                found.add(cls)
    return found


def test_the_replayer_registers_every_workflow() -> None:
    assert set(ALL_WORKFLOWS) == defined_workflows()


def test_committed_histories_are_unchanged() -> None:
    """A history is never rewritten or deleted, and none is added without its checksum."""
    sums = checksums()
    assert sums, "no release histories: record them with RECORD_HISTORIES=<release>"
    assert recorded() == sorted(sums), "a history was deleted, or added without tests/recorded.py"
    for rel, sha in sums.items():
        assert digest((HISTORIES / rel).read_bytes()) == sha, f"{rel} was changed after it was recorded"


def scenarios(release: str, kind: str) -> set[str]:
    prefix = f"release-{release}/{kind}/"
    return {rel.removeprefix(prefix).removesuffix(".json") for rel in recorded() if rel.startswith(prefix)}


def test_release_1_0_covers_every_branch_of_the_order() -> None:
    order = scenarios("1.0", "order")
    assert RELEASE_1_0_ORDER <= order, sorted(RELEASE_1_0_ORDER - order)


def test_release_1_1_covers_every_branch_of_the_order_and_the_first_link_cut() -> None:
    """1.1 patched the first link (FIRST_LINK_CUT): each of its histories was recorded on the patch."""
    wanted = RELEASE_1_0_ORDER | {"first_link_cut_at_deadline"}
    assert wanted <= scenarios("1.1", "order"), sorted(wanted - scenarios("1.1", "order"))
    for name in scenarios("1.1", "order"):
        rel = f"release-1.1/order/{name}.json"
        assert FIRST_LINK_CUT in patches(rel), f"{rel} was not recorded on the first-link-cut patch"


def patches(rel: str) -> set[str]:
    """The workflow.patched ids a recorded history carries (core_patch markers)."""
    history = WorkflowHistory.from_json(rel, (HISTORIES / rel).read_text())
    found = set()
    for event in history.events:
        marker = event.marker_recorded_event_attributes
        if marker.marker_name == "core_patch":
            found.add(json.loads(marker.details["patch-data"].payloads[0].data)["id"])
    return found


RELEASE_1_0_ORDER = {
    "paid",
    "expired_after_reminder",
    "retried_three_times_then_expired",
    "last_attempt_failed",
    "cancel",
    "extend",
    "expire_now",
    "in_flight_recheck_at_deadline",
    "needs_review_wrong_amount",
    "adopted_attempt",
    "failed_first_link",
    "late_verdict_while_ending",
    "payos_paid_in_two_parts",
    "payos_overpaid_after_paid",
    "operator_refunded_then_paid",
}


def recorded_type(rel: str) -> str:
    """The workflow type a recorded history is of (its first event says)."""
    history = WorkflowHistory.from_json(rel, (HISTORIES / rel).read_text())
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


def test_every_workflow_has_a_recorded_history() -> None:
    """A workflow without one has nothing its changes are replayed against."""
    types = {recorded_type(rel) for rel in recorded()}
    missing = sorted(w.__name__ for w in ALL_WORKFLOWS if w.__temporal_workflow_definition.name not in types)
    assert not missing, f"no recorded history of {missing}: record one with tests/recorded.py keep()"


def test_release_1_0_covers_the_money_paths_of_late_payments_and_refunds() -> None:
    for kind, wanted in RELEASE_1_0_MONEY.items():
        assert wanted <= scenarios("1.0", kind), (kind, sorted(wanted - scenarios("1.0", kind)))


RELEASE_1_0_MONEY = {
    "late_payment": {"refunded", "needs_review", "accepted", "refund_unknown_then_refunded", "refused"},
    "refund": {"refunded", "unknown_then_refunded", "refused"},
}


@SESSION_LOOP
async def test_every_release_history_replays_against_the_current_code() -> None:
    replayer = Replayer(workflows=ALL_WORKFLOWS, data_converter=DATA_CONVERTER)
    for rel in recorded():
        history = WorkflowHistory.from_json(rel, (HISTORIES / rel).read_text())
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{rel}: {result.replay_failure}"
