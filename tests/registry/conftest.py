"""The storage a registry test's stores run on: a MemoryStore (tests/storage/memory.py), or a
watch cache on one as kext runs it (`Cacher` over the storage), and, for the tests that take
`any_storage`, also the session's real etcd (those are integration tests)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from kext.api.resource import ResourceDefinition
from kext.registry.store import Store, resource_root
from kext.registry.strategy import Strategies
from kext.storage.cacher import DEFAULT_BLOCK_TIMEOUT, Cacher
from kext.storage.etcd3 import Etcd3Store
from kext.storage.interface import Interface
from tests.registry.objects import definition
from tests.storage.memory import MemoryStore

IN_MEMORY = ["memory", "cacher"]


@dataclass
class Storage:
    """What stores are built on: `base` is the storage itself (what a write must, or must
    not, reach); with `cached`, each store reads through a Cacher on it."""

    kind: str
    base: MemoryStore | Etcd3Store
    cached: bool
    prefix: str = field(default_factory=lambda: f"/registry-{uuid.uuid4().hex[:8]}")
    caches: list[Cacher] = field(default_factory=list)

    async def store(self, definition: ResourceDefinition,
                    strategies: Strategies | None = None, *,
                    block_timeout: float = DEFAULT_BLOCK_TIMEOUT) -> Store:
        """A Store of definition on this storage (its watch cache started and primed; reads
        wait at most block_timeout seconds for it to reach a revision)."""
        interface: Interface = self.base
        if self.cached:
            cache = Cacher(self.base, resource_root(self.prefix, definition),
                           block_timeout=block_timeout)
            await cache.start()
            await cache.wait_ready(5)
            self.caches.append(cache)
            interface = cache
        return Store(definition, interface, self.prefix, strategies)

    async def revision(self) -> int:
        """The storage's revision: any write moves it."""
        return await self.base.current_revision()

    async def close(self) -> None:
        for cache in self.caches:
            await cache.stop()


def _storage(request: pytest.FixtureRequest) -> Storage:
    # synchronous: etcd_client is an async fixture, reached from a sync one only
    kind = request.param
    if kind == "etcd":
        return Storage(kind, Etcd3Store(request.getfixturevalue("etcd_client")), cached=False)
    return Storage(kind, MemoryStore(), cached=kind == "cacher")


@pytest.fixture
def cached_storage() -> Storage:
    """A Cacher on a MemoryStore, as kext runs (watches are the cache's)."""
    return Storage("cacher", MemoryStore(), cached=True)


@pytest.fixture(params=IN_MEMORY)
def in_memory_storage(request: pytest.FixtureRequest) -> Storage:
    return _storage(request)


@pytest.fixture(params=[*IN_MEMORY, "etcd"])
def every_storage(request: pytest.FixtureRequest) -> Storage:
    return _storage(request)


@pytest_asyncio.fixture
async def storage(in_memory_storage: Storage) -> AsyncIterator[Storage]:
    """A MemoryStore, or a Cacher on one."""
    yield in_memory_storage
    await in_memory_storage.close()


@pytest_asyncio.fixture
async def any_storage(every_storage: Storage) -> AsyncIterator[Storage]:
    """A MemoryStore, a Cacher on one, or the session's real etcd."""
    yield every_storage
    await every_storage.close()


@pytest_asyncio.fixture
async def widgets(storage: Storage) -> Store:
    """The Widget store (namespaced, with a status subresource) on `storage`."""
    return await storage.store(definition("widgets"))


@pytest_asyncio.fixture
async def gadgets(storage: Storage) -> Store:
    """The Gadget store (cluster-scoped) on `storage`."""
    return await storage.store(definition("gadgets"))
