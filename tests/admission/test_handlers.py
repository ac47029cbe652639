"""Server-wide hooks through the whole handler tree in memory (kext's filters, router and
handlers, a store on in-memory storage): what a client gets, headers included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from kext.config import HookConfig, ServerConfig
from tests.registry.objects import widget
from tests.server.inmemory import GADGETS, WIDGETS, InMemoryServer, body
from tests.server.test_handlers import MERGE, status

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[InMemoryServer]:
    def configure(options: ServerConfig, tmp: Path) -> None:
        options.admission.hooks = [
            HookConfig("tests.admission.sample_hooks:stamp", "Mutating"),
            HookConfig("tests.admission.sample_hooks:refuse_nope"),
            HookConfig("tests.admission.sample_hooks:explode", failure_policy="Ignore"),
        ]

    started = await InMemoryServer.start(tmp_path, configure=configure)
    yield started
    await started.stop()


def warnings_of(response: object) -> list[str]:
    return [v for k, v in getattr(response, "headers", []) if k == "Warning"]


async def test_a_mutating_hook_and_its_warning_reach_the_client(server: InMemoryServer) -> None:
    created = await server.request("POST", WIDGETS, widget("w"))
    assert body(created)["metadata"]["labels"]["stamped"] == "create"
    assert warnings_of(created) == ['299 - "stamped by kext-admin"']
    patched = await server.request("PATCH", f"{WIDGETS}/w", {"spec": {"size": 3}},
                                   headers=MERGE)
    assert body(patched)["metadata"]["labels"]["stamped"] == "update"
    gadget = await server.request("POST", GADGETS, {
        "apiVersion": "example.kext.io/v1alpha1", "kind": "Gadget", "metadata": {"name": "g"}})
    assert body(gadget)["metadata"]["labels"]["stamped"] == "create"


async def test_a_refusal_carries_the_warnings_given_before_it(server: InMemoryServer) -> None:
    refused = await server.request("POST", WIDGETS, widget("nope"))
    denial = status(refused, 400, "")
    assert denial["message"] == ('admission hook "tests.admission.sample_hooks:refuse_nope" '
                                 "denied the request: nope is not a name")
    assert warnings_of(refused) == ['299 - "stamped by kext-admin"', '299 - "about to refuse"']
    missing = await server.request("GET", f"{WIDGETS}/nope")
    status(missing, 404, "NotFound")


async def test_a_dry_run_is_admitted_and_not_stored(server: InMemoryServer) -> None:
    dry = await server.request("POST", f"{WIDGETS}?dryRun=All", widget("dry"))
    assert body(dry)["metadata"]["labels"]["stamped"] == "create"
    status(await server.request("GET", f"{WIDGETS}/dry"), 404, "NotFound")
