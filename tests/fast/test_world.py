"""The fakes stand in for the steps only while they keep the steps' names and types: a step whose
types change fails here, not as a puzzling deserialization error in a fast test."""

from __future__ import annotations

import typing

from tests.fast.world import World
from workflows import steps

NOT_FAKED: set[str] = set()  # every workflow's steps run here against fakes


def test_every_step_of_every_workflow_is_faked_with_the_same_types() -> None:
    declared = {
        fn.__temporal_activity_definition.name: fn
        for fn in vars(steps).values()
        if hasattr(fn, "__temporal_activity_definition")
    }
    fakes = World(None).activities()
    faked = {fn.__temporal_activity_definition.name: fn for fn in fakes}
    assert set(faked) == set(declared) - NOT_FAKED
    for name, fake in faked.items():
        assert typing.get_type_hints(fake) == typing.get_type_hints(declared[name]), name
