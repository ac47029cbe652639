"""A resource's own Python hooks (its CRD's `kext.io/hooks`) on every write through the
handler tree in memory: defaulting and validation as admission plugins, status computed by
the strategy, and what a dry run or a delete sees of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.registry.objects import definition_with_hooks, widget
from tests.server.inmemory import WIDGETS, InMemoryServer, body
from tests.server.test_handlers import MERGE, status

pytestmark = pytest.mark.asyncio

HOOKS = {
    "defaulting": ["examples.widget_hooks:default_tags"],
    "validation": ["examples.widget_hooks:red_widgets_are_small"],
    "status": ["examples.widget_hooks:phase"],
}


@pytest_asyncio.fixture
async def hooked(tmp_path: Path) -> AsyncIterator[InMemoryServer]:
    server = await InMemoryServer.start(tmp_path, [definition_with_hooks("widgets", HOOKS)])
    yield server
    await server.stop()


async def test_hooks_default_validate_and_compute_status(hooked: InMemoryServer) -> None:
    created = body(await hooked.request("POST", WIDGETS, widget(color="green")))
    assert created["spec"]["tags"] == ["green"]  # defaulted
    assert created["status"] == {"phase": "Pending", "observedGeneration": 1}
    updated = body(await hooked.request("PATCH", f"{WIDGETS}/w", {"spec": {"size": 2}},
                                        headers=MERGE))
    assert updated["status"] == {"phase": "Ready", "observedGeneration": 2}
    error = status(await hooked.request("POST", WIDGETS, widget("big", color="red", size=6)),
                   422, "Invalid")
    # a message about the whole object, as kube words a rule of the root schema
    assert error["message"] == ('Widget.example.kext.io "big" is invalid: <nil>: Invalid value: '
                                '"object": red widgets may not be bigger than 5')
    assert error["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "field": "<nil>",
         "message": 'Invalid value: "object": red widgets may not be bigger than 5'}]
    status(await hooked.request("PATCH", f"{WIDGETS}/w",
                                {"spec": {"color": "red", "size": 9}}, headers=MERGE),
           422, "Invalid")
    assert body(await hooked.request("GET", f"{WIDGETS}/w"))["spec"]["size"] == 2


async def test_a_dry_run_is_admitted_like_a_write(hooked: InMemoryServer) -> None:
    dry = await hooked.request("POST", f"{WIDGETS}?dryRun=All", widget(color="red", size=9))
    status(dry, 422, "Invalid")
    ok = body(await hooked.request("POST", f"{WIDGETS}?dryRun=All", widget()))
    assert ok["spec"]["tags"] == ["blue"] and ok["status"]["phase"] == "Pending"
    assert body(await hooked.request("GET", WIDGETS))["items"] == []


async def test_apply_is_admitted_as_a_create_then_an_update(hooked: InMemoryServer) -> None:
    intent = (b'{"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",'
              b' "metadata": {"name": "a"}, "spec": {"color": "red"}}')
    headers = {"content-type": "application/apply-patch+yaml"}
    created = await hooked.request("PATCH", f"{WIDGETS}/a?fieldManager=k", intent,
                                   headers=headers)
    assert created.code == 201 and body(created)["status"]["phase"] == "Pending"
    assert body(created)["spec"]["tags"] == ["red"]
    again = await hooked.request("PATCH", f"{WIDGETS}/a?fieldManager=k",
                                 intent.replace(b'"red"}', b'"red", "size": 7}'),
                                 headers=headers)
    status(again, 422, "Invalid")
