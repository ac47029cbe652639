"""The storage contract runs against both implementations of storage.Interface that keep
state: `store` is an Etcd3Store on the session's real etcd, or a MemoryStore
(tests/storage/memory.py), so the memory store is proven to behave like etcd. Tests that need
an etcd process of their own (restarts, outages, TLS, etcd's metrics) take `make_etcd` or
`etcd_client` instead, and run on etcd only."""

from __future__ import annotations

import pytest

from kext.storage.etcd3 import Etcd3Store
from tests.storage.memory import MemoryStore

# What the contract tests take: storage.Interface plus compact() (both have it).
ContractStore = Etcd3Store | MemoryStore


@pytest.fixture(params=["etcd", "memory"])
def store(request: pytest.FixtureRequest) -> ContractStore:
    """An Etcd3Store on the session etcd, or a MemoryStore: the same contract for both."""
    if request.param == "memory":
        return MemoryStore()
    return Etcd3Store(request.getfixturevalue("etcd_client"))
