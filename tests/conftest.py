"""Shared fixtures: one real etcd for the whole session, a fresh key prefix per test, and an
`Etcd3Store` on that etcd; the kube-apiserver stand-in (tests/kube_apiserver.py) and a
Twisted asyncio reactor on the test's own event loop for clients of it. Async tests and
fixtures run on pytest-asyncio (one event loop per test): mark a module with
`pytestmark = pytest.mark.asyncio`. The session header says which etcd binary the tests run
(tests/etcd.py: `KEXT_TEST_ETCD` picks another).

Integration tests (a real etcd or kext process) carry the `integration` marker, so the unit
tests run alone with `-m "not integration"` (the README's test command runs them first, with
coverage). The marker is given here rather than by hand: to every test under
tests/integration/ or in INTEGRATION_MODULES, to every test whose fixtures start or reach
etcd (ETCD_FIXTURES, directly or through other fixtures), and to the "etcd" case of a test
parametrized over backends (`store`, `gated_store`, `backend`...: its fixture reaches etcd
through request.getfixturevalue, which the fixture closure does not show)."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from twisted.internet.asyncioreactor import AsyncioSelectorReactor

from kext.storage.etcd3 import Etcd3Store, EtcdClient
from tests.etcd import EtcdServer, TLSFiles, etcd_description, scratch_dir
from tests.kube_apiserver import KubeAPIServer


def pytest_report_header(config: pytest.Config) -> str:
    return f"etcd: {etcd_description()}"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if config.get_verbosity() < 0:  # -q hides the header: say it at the end instead
        terminalreporter.write_line(f"etcd: {etcd_description()}")

ETCD_FIXTURES = frozenset({"etcd_server", "make_etcd", "etcd_client"})
# Modules that start etcd or kext processes of their own, without a fixture of ETCD_FIXTURES.
INTEGRATION_MODULES = frozenset({"tests/storage/test_embedded.py",
                                 "tests/test_benchmarks_smoke.py"})
ROOT = Path(__file__).resolve().parent.parent


def is_integration(item: pytest.Item) -> bool:
    """Whether a collected test needs a real etcd or kext process (see the module docstring)."""
    path = Path(item.path).resolve()
    relative = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else ""
    if relative.startswith("tests/integration/") or relative in INTEGRATION_MODULES:
        return True
    if ETCD_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "etcd" in callspec.params.values()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    integration = pytest.mark.integration
    for item in items:
        if is_integration(item):
            item.add_marker(integration)


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    """A real etcd shared by the session. Do not stop it: use your own EtcdServer for that."""
    data = scratch_dir("kext-etcd-")
    server = EtcdServer(data / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test uses, ending with '/'."""
    return f"/kext-test/{uuid.uuid4().hex}/"


@pytest_asyncio.fixture
async def etcd_client(etcd_server: EtcdServer) -> AsyncIterator[EtcdClient]:
    """An EtcdClient connected to the session etcd (closed after the test)."""
    client = EtcdClient([etcd_server.endpoint])
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture
async def store(etcd_client: EtcdClient) -> Etcd3Store:
    """An Etcd3Store on the session etcd."""
    return Etcd3Store(etcd_client)


@pytest.fixture
def make_etcd() -> Iterator[Callable[..., EtcdServer]]:
    """Start etcd servers of the test's own (to stop, restart or configure), cleaned up after:
    make_etcd(tls=None, extra=()) -> a started EtcdServer."""
    servers: list[tuple[EtcdServer, Path]] = []

    def make(*, tls: TLSFiles | None = None, extra: tuple[str, ...] = ()) -> EtcdServer:
        directory = scratch_dir("kext-etcd-")
        server = EtcdServer(directory / "data", tls=tls, extra=extra)
        servers.append((server, directory))
        server.start()
        return server

    yield make
    for server, directory in servers:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def kube_apiserver(tmp_path: Path) -> Iterator[KubeAPIServer]:
    """A running kube-apiserver stand-in, stopped after the test."""
    server = KubeAPIServer(tmp_path / "kube-apiserver")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture
async def reactor() -> AsyncIterator[Any]:
    """An asyncio reactor running on this test's loop (its thread pool started for name
    resolution, as reactor.run() would); built, not installed: each test has its own loop."""
    loop = asyncio.get_running_loop()
    built = AsyncioSelectorReactor(loop)
    pool = built.getThreadPool()
    pool.start()
    try:
        yield built
    finally:
        pool.stop()
        built.removeAll()
