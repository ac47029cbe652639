"""The storage contract: create, get, delete, guaranteed update, list (modelled on
k8s.io/apiserver pkg/storage/testing/store_tests.go), on a real etcd and on the memory store
(the `store` fixture runs each such test on both); then etcd's availability, connections and
TLS, on etcd processes of their own."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from kext.storage.continue_token import decode_continue, encode_continue
from kext.storage.embedded import free_port
from kext.storage.errors import (
    ExpiredError,
    InvalidObjectError,
    KeyExistsError,
    KeyNotFoundError,
    ResourceVersionConflictError,
    TooLargeResourceVersionError,
    UnavailableError,
)
from kext.storage.etcd3 import Endpoint, Etcd3Store, connect, parse_endpoint
from kext.storage.interface import Interface, ListOptions, Object, Preconditions, UpdateFunc
from kext.storage.settings import EtcdSettings
from tests.etcd import EtcdServer, make_tls_files, until
from tests.storage.conftest import ContractStore
from tests.storage.memory import MemoryStore

pytestmark = pytest.mark.asyncio


def widget(name: str, **spec: object) -> Object:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name, "uid": f"uid-{name}"},
        "spec": dict(spec),
    }


def rv(obj: Object) -> int:
    return int(obj["metadata"]["resourceVersion"])


async def raw_value(store: ContractStore, key: str) -> Object:
    """The JSON object as stored: read from etcd with plain aetcd, or the memory store's."""
    if isinstance(store, MemoryStore):
        return store.stored(key)
    got = await store.client.get(key.encode())
    assert got is not None
    value: Object = orjson.loads(got.value)
    return value


# -- create


async def test_create_returns_object_with_its_revision(
    store: ContractStore, key_prefix: str
) -> None:
    key = key_prefix + "a"
    created = await store.create(key, widget("a", size=1))
    assert rv(created) == await store.current_revision()
    assert created["spec"] == {"size": 1}
    assert await store.get(key) == created
    # The resourceVersion lives in etcd's revision, never in the stored value.
    assert "resourceVersion" not in (await raw_value(store, key))["metadata"]


async def test_create_ignores_a_given_resource_version(
    store: ContractStore, key_prefix: str
) -> None:
    obj = widget("a")
    obj["metadata"]["resourceVersion"] = "12345"
    created = await store.create(key_prefix + "a", obj)
    assert rv(created) != 12345
    assert "resourceVersion" not in (await raw_value(store, key_prefix + "a"))["metadata"]
    assert obj["metadata"]["resourceVersion"] == "12345"  # the caller's object is untouched


async def test_create_existing_key_fails(store: ContractStore, key_prefix: str) -> None:
    first = await store.create(key_prefix + "a", widget("a", size=1))
    with pytest.raises(KeyExistsError):
        await store.create(key_prefix + "a", widget("a", size=2))
    assert await store.get(key_prefix + "a") == first


# -- get


async def test_get_missing_key(store: ContractStore, key_prefix: str) -> None:
    with pytest.raises(KeyNotFoundError):
        await store.get(key_prefix + "missing")


async def test_get_at_resource_versions(store: ContractStore, key_prefix: str) -> None:
    key = key_prefix + "a"
    before = await store.current_revision()
    v1 = await store.create(key, widget("a", size=1))
    v2 = await store.guaranteed_update(key, set_size(2))

    assert await store.get(key) == v2
    assert await store.get(key, resource_version="0") == v2
    assert await store.get(key, resource_version=str(rv(v1))) == v1
    assert await store.get(key, resource_version=str(rv(v2))) == v2
    with pytest.raises(KeyNotFoundError):
        await store.get(key, resource_version=str(before))
    # NotOlderThan (kube-apiserver's GET ?resourceVersion=N): the latest state.
    got = await store.get(key, resource_version=str(rv(v1)),
                          resource_version_match="NotOlderThan")
    assert got == v2

    future = str(await store.current_revision() + 100)
    with pytest.raises(TooLargeResourceVersionError):
        await store.get(key, resource_version=future)
    with pytest.raises(TooLargeResourceVersionError):
        await store.get(key, resource_version=future, resource_version_match="NotOlderThan")
    with pytest.raises(InvalidObjectError):
        await store.get(key, resource_version="not-a-number")

    await store.compact(rv(v2))
    with pytest.raises(ExpiredError):
        await store.get(key, resource_version=str(rv(v1)))
    assert await store.get(key, resource_version=str(rv(v2))) == v2


# -- delete


async def test_delete(store: ContractStore, key_prefix: str) -> None:
    key = key_prefix + "a"
    created = await store.create(key, widget("a", size=1))
    deleted = await store.delete(key)
    # The deleted object is its last state, at the revision of the delete.
    assert rv(deleted) == await store.current_revision() > rv(created)
    assert deleted["spec"] == created["spec"]
    with pytest.raises(KeyNotFoundError):
        await store.get(key)
    with pytest.raises(KeyNotFoundError):
        await store.delete(key)


async def test_delete_with_preconditions(store: ContractStore, key_prefix: str) -> None:
    key = key_prefix + "a"
    created = await store.create(key, widget("a"))
    with pytest.raises(ResourceVersionConflictError):
        await store.delete(key, preconditions=Preconditions(uid="another-uid"))
    with pytest.raises(ResourceVersionConflictError):
        await store.delete(key, preconditions=Preconditions(resource_version=str(rv(created) - 1)))
    assert await store.get(key) == created
    await store.delete(
        key,
        preconditions=Preconditions(uid="uid-a", resource_version=created["metadata"][
            "resourceVersion"]),
    )
    with pytest.raises(KeyNotFoundError):
        await store.get(key)


async def test_delete_from_a_cached_object(store: ContractStore, key_prefix: str) -> None:
    """A cached copy saves the read; a stale one is caught by the transaction's compare and
    the checks run again on what is stored now."""
    key = key_prefix + "a"
    stale = await store.create(key, widget("a", size=1))

    async def bump(obj: Object | None) -> Object:
        assert obj is not None
        return {**obj, "spec": {"size": 2}}

    current = await store.guaranteed_update(key, bump)
    checked: list[int] = []

    async def validate(obj: Object) -> None:
        checked.append(obj["spec"]["size"])

    with pytest.raises(ResourceVersionConflictError):  # decided on the stored object
        await store.delete(key, cached=stale, validate=validate, preconditions=Preconditions(
            resource_version=stale["metadata"]["resourceVersion"]))
    # the stale copy passed, the transaction's compare caught it, etcd's state decided
    assert checked == [1]
    deleted = await store.delete(key, cached=stale, validate=validate, preconditions=Preconditions(
        resource_version=current["metadata"]["resourceVersion"]))
    assert deleted["spec"] == current["spec"] == {"size": 2}
    assert checked == [1, 2]  # the stale copy failed the precondition: etcd's state was read
    assert stale["metadata"]["resourceVersion"] != deleted["metadata"]["resourceVersion"]
    with pytest.raises(KeyNotFoundError):
        await store.get(key)


async def test_delete_validation_rejects(store: ContractStore, key_prefix: str) -> None:
    key = key_prefix + "a"
    created = await store.create(key, widget("a", protected=True))
    seen: list[Object] = []

    async def validate(obj: Object) -> None:
        seen.append(obj)
        if obj["spec"].get("protected"):
            raise PermissionError("protected")

    with pytest.raises(PermissionError):
        await store.delete(key, validate=validate)
    assert seen == [created]
    assert await store.get(key) == created


async def test_delete_rechecks_after_a_concurrent_update(
    store: ContractStore, key_prefix: str
) -> None:
    """A change between the read and the delete makes the delete re-check the new state."""
    key = key_prefix + "a"
    await store.create(key, widget("a", size=1))
    seen: list[int] = []

    async def validate(obj: Object) -> None:
        seen.append(obj["spec"]["size"])
        if len(seen) == 1:
            await store.guaranteed_update(key, set_size(2))

    deleted = await store.delete(key, validate=validate)
    assert seen == [1, 2]
    assert deleted["spec"]["size"] == 2


# -- guaranteed update


def set_size(size: int) -> UpdateFunc:
    async def update(obj: Object | None) -> Object:
        assert obj is not None
        obj["spec"]["size"] = size
        return obj

    return update


async def test_guaranteed_update(store: ContractStore, key_prefix: str) -> None:
    key = key_prefix + "a"
    created = await store.create(key, widget("a", size=1))
    seen: list[Object] = []

    async def update(obj: Object | None) -> Object:
        assert obj is not None
        seen.append(dict(obj, metadata=dict(obj["metadata"])))
        return {**obj, "spec": {"size": obj["spec"]["size"] + 1}}

    updated = await store.guaranteed_update(key, update)
    assert seen == [created]  # the update saw the current object, with its resourceVersion
    assert updated["spec"] == {"size": 2}
    assert rv(updated) == await store.current_revision() > rv(created)
    assert await store.get(key) == updated


async def test_guaranteed_update_missing_key(store: ContractStore, key_prefix: str) -> None:
    key = key_prefix + "a"
    with pytest.raises(KeyNotFoundError):
        await store.guaranteed_update(key, set_size(1))
    seen: list[Object | None] = []

    async def create(obj: Object | None) -> Object:
        seen.append(obj)
        return widget("a", size=1)

    created = await store.guaranteed_update(key, create, ignore_not_found=True)
    assert seen == [None]
    assert await store.get(key) == created


async def test_guaranteed_update_without_change_does_not_write(
    store: ContractStore, key_prefix: str
) -> None:
    key = key_prefix + "a"
    created = await store.create(key, widget("a", size=1))
    revision = await store.current_revision()

    async def same(obj: Object | None) -> Object:
        assert obj is not None
        return obj

    assert await store.guaranteed_update(key, same) == created
    assert await store.guaranteed_update(key, set_size(1)) == created
    assert await store.current_revision() == revision


async def test_guaranteed_update_preconditions(store: ContractStore, key_prefix: str) -> None:
    key = key_prefix + "a"
    created = await store.create(key, widget("a", size=1))
    with pytest.raises(ResourceVersionConflictError):
        await store.guaranteed_update(key, set_size(2), preconditions=Preconditions(uid="other"))
    stale = Preconditions(resource_version=str(rv(created) - 1))
    with pytest.raises(ResourceVersionConflictError):
        await store.guaranteed_update(key, set_size(2), preconditions=stale)
    assert await store.get(key) == created
    current = Preconditions(uid="uid-a", resource_version=str(rv(created)))
    updated = await store.guaranteed_update(key, set_size(2), preconditions=current)
    assert updated["spec"] == {"size": 2}


async def test_guaranteed_update_error_aborts(store: ContractStore, key_prefix: str) -> None:
    key = key_prefix + "a"
    created = await store.create(key, widget("a", size=1))

    async def refuse(obj: Object | None) -> Object:
        raise ValueError("invalid")

    with pytest.raises(ValueError, match="invalid"):
        await store.guaranteed_update(key, refuse)
    assert await store.get(key) == created


async def test_guaranteed_update_retries_on_conflict(store: ContractStore, key_prefix: str) -> None:
    """An update that loses the race re-runs on the new state: no update is lost."""
    key = key_prefix + "a"
    await store.create(key, widget("a", labels=[]))
    calls: list[list[str]] = []

    async def add_label(label: str, obj: Object | None) -> Object:
        assert obj is not None
        return {**obj, "spec": {"labels": [*obj["spec"]["labels"], label]}}

    async def slow_updater(obj: Object | None) -> Object:
        assert obj is not None
        calls.append(list(obj["spec"]["labels"]))
        if len(calls) == 1:
            # Another writer lands between this update's read and its write.
            await store.guaranteed_update(key, functools.partial(add_label, "fast"))
        return await add_label("slow", obj)

    updated = await store.guaranteed_update(key, slow_updater)
    assert calls == [[], ["fast"]]
    assert updated["spec"]["labels"] == ["fast", "slow"]


async def test_concurrent_guaranteed_updates_all_land(
    store: ContractStore, key_prefix: str
) -> None:
    key = key_prefix + "counter"
    await store.create(key, widget("counter", count=0))

    async def increment(obj: Object | None) -> Object:
        assert obj is not None
        return {**obj, "spec": {"count": obj["spec"]["count"] + 1}}

    await asyncio.gather(*(store.guaranteed_update(key, increment) for _ in range(20)))
    assert (await store.get(key))["spec"]["count"] == 20


# -- list


async def create_widgets(store: ContractStore, key_prefix: str, names: list[str]) -> list[Object]:
    return [await store.create(key_prefix + name, widget(name)) for name in names]


def names(items: list[Object]) -> list[str]:
    return [item["metadata"]["name"] for item in items]


async def test_list(store: ContractStore, key_prefix: str) -> None:
    empty = await store.list(key_prefix, ListOptions())
    assert empty.items == []
    assert int(empty.resource_version) == await store.current_revision()

    created = await create_widgets(store, key_prefix, ["b", "a", "c"])
    # A sibling whose key shares the prefix as a string must not be listed.
    await store.create(key_prefix.rstrip("/") + "x/d", widget("d"))
    result = await store.list(key_prefix, ListOptions())
    assert names(result.items) == ["a", "b", "c"]
    assert result.items == sorted(created, key=lambda o: str(o["metadata"]["name"]))
    assert int(result.resource_version) == await store.current_revision()
    assert result.continue_token == ""
    assert result.remaining_item_count is None
    assert await store.count(key_prefix) == 3
    # The prefix without its trailing slash means the same directory.
    assert names((await store.list(key_prefix.rstrip("/"), ListOptions())).items) == names(
        result.items
    )


async def test_list_not_recursive(store: ContractStore, key_prefix: str) -> None:
    await create_widgets(store, key_prefix, ["a", "ab"])
    result = await store.list(key_prefix + "a", ListOptions(recursive=False))
    assert names(result.items) == ["a"]
    assert (await store.list(key_prefix + "zz", ListOptions(recursive=False))).items == []


async def test_list_pages_are_one_snapshot(store: ContractStore, key_prefix: str) -> None:
    """limit + continue returns every object of the first page's revision exactly once,
    whatever is written between the pages."""
    all_names = [f"w{i:02d}" for i in range(8)]
    await create_widgets(store, key_prefix, all_names)

    first = await store.list(key_prefix, ListOptions(limit=3))
    assert names(first.items) == all_names[:3]
    assert first.remaining_item_count == 5
    pages = [first]
    token = first.continue_token
    while token:
        # Writes between pages: they must not show in this list.
        await store.create(key_prefix + f"new-{len(pages)}", widget(f"new-{len(pages)}"))
        if len(pages) == 1:
            await store.delete(key_prefix + all_names[-1])
        await store.guaranteed_update(key_prefix + "w04", set_size(len(pages)))
        page = await store.list(key_prefix, ListOptions(limit=3, continue_token=token))
        assert page.resource_version == first.resource_version
        pages.append(page)
        token = page.continue_token

    assert [len(p.items) for p in pages] == [3, 3, 2]
    assert [p.remaining_item_count for p in pages] == [5, 2, None]
    listed = [item for p in pages for item in p.items]
    assert names(listed) == all_names
    assert all(rv(item) <= int(first.resource_version) for item in listed)
    assert "size" not in listed[4]["spec"]


async def test_list_limit_on_exact_page_boundary(store: ContractStore, key_prefix: str) -> None:
    await create_widgets(store, key_prefix, ["a", "b", "c", "d"])
    first = await store.list(key_prefix, ListOptions(limit=2))
    second = await store.list(key_prefix, ListOptions(limit=2, continue_token=first.continue_token))
    assert names(first.items + second.items) == ["a", "b", "c", "d"]
    assert second.continue_token == ""


async def test_list_with_predicate_and_limit(store: ContractStore, key_prefix: str) -> None:
    """The store reads on until `limit` objects match (like kube-apiserver's GetList)."""
    all_names = [f"w{i:02d}" for i in range(30)]
    await create_widgets(store, key_prefix, all_names)
    wanted = [n for i, n in enumerate(all_names) if i % 4 == 3]  # 7 of 30

    def selected(obj: Object) -> bool:
        return str(obj["metadata"]["name"]) in wanted

    listed: list[Object] = []
    token = ""
    pages = 0
    while True:
        page = await store.list(
            key_prefix, ListOptions(limit=2, continue_token=token, predicate=selected)
        )
        pages += 1
        assert len(page.items) <= 2
        assert page.remaining_item_count is None  # unknown with a predicate
        listed += page.items
        token = page.continue_token
        if not token:
            break
    assert names(listed) == wanted
    assert pages <= 5  # full pages while matches remain (the last may be empty)

    everything = await store.list(key_prefix, ListOptions(predicate=selected))
    assert names(everything.items) == wanted


async def test_list_resource_version_semantics(store: ContractStore, key_prefix: str) -> None:
    key = key_prefix + "a"
    v1 = await store.create(key, widget("a", size=1))
    v2 = await store.guaranteed_update(key, set_size(2))
    await store.create(key_prefix + "b", widget("b"))
    current = await store.current_revision()

    def at(resource_version: str, match: str = "", limit: int = 0) -> ListOptions:
        return ListOptions(resource_version=resource_version, resource_version_match=match,
                           limit=limit)

    exact = await store.list(key_prefix, at(str(rv(v1)), "Exact"))
    assert exact.items == [v1]
    assert exact.resource_version == str(rv(v1))
    # Legacy: resourceVersion with limit and no match is exact too.
    legacy = await store.list(key_prefix, at(str(rv(v1)), "", limit=10))
    assert legacy.items == [v1]

    for options in (at(""), at("0"), at(str(rv(v1))), at(str(rv(v1)), "NotOlderThan")):
        result = await store.list(key_prefix, options)
        assert names(result.items) == ["a", "b"], options
        assert result.items[0] == v2
        assert int(result.resource_version) >= current

    too_large = str(current + 1000)
    for options in (at(too_large), at(too_large, "NotOlderThan"), at(too_large, "Exact")):
        with pytest.raises(TooLargeResourceVersionError):
            await store.list(key_prefix, options)
    with pytest.raises(InvalidObjectError):
        await store.list(key_prefix, at("x"))
    with pytest.raises(InvalidObjectError):
        await store.list(key_prefix, at("1", "Sometime"))


async def test_list_after_compaction(store: ContractStore, key_prefix: str) -> None:
    await create_widgets(store, key_prefix, ["a", "b", "c"])
    first = await store.list(key_prefix, ListOptions(limit=1))
    old = first.resource_version
    await store.guaranteed_update(key_prefix + "b", set_size(1))
    await store.compact(await store.current_revision())

    with pytest.raises(ExpiredError, match="continue"):
        await store.list(key_prefix, ListOptions(limit=1, continue_token=first.continue_token))
    with pytest.raises(ExpiredError):
        await store.list(key_prefix, ListOptions(resource_version=old,
                                                 resource_version_match="Exact"))
    # A new list works, as the Expired error tells the client.
    assert names((await store.list(key_prefix, ListOptions())).items) == ["a", "b", "c"]


async def test_continue_token_format(store: ContractStore, key_prefix: str) -> None:
    await create_widgets(store, key_prefix, ["a", "b"])
    page = await store.list(key_prefix, ListOptions(limit=1))
    raw = base64.urlsafe_b64decode(page.continue_token + "=" * (-len(page.continue_token) % 4))
    assert orjson.loads(raw) == {
        "v": "meta.k8s.io/v1",
        "rv": int(page.resource_version),
        "start": "a\x00",
    }
    assert decode_continue(page.continue_token, key_prefix) == (
        key_prefix + "a\x00", int(page.resource_version))
    # A token with a negative revision (kube-apiserver's "inconsistent" token) reads latest.
    latest = encode_continue(key_prefix + "a\x00", key_prefix, -1)
    assert names((await store.list(key_prefix, ListOptions(continue_token=latest))).items) == ["b"]

    def b64(data: object) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).decode()

    for bad in ("not base64!", b64([]), b64({"v": "v9", "rv": 1, "start": "a"}),
                b64({"v": "meta.k8s.io/v1", "rv": 0, "start": "a"}),
                encode_continue(key_prefix + "../escape", key_prefix, 5)):
        with pytest.raises(InvalidObjectError, match=r"^invalid continue token: continue key "
                           r"is not valid"):
            await store.list(key_prefix, ListOptions(continue_token=bad))


# -- what the watch cache needs


async def test_snapshot_pages_are_one_revision(store: ContractStore, key_prefix: str) -> None:
    """Every object with its key, page by page, all at the first page's revision."""
    created = await create_widgets(store, key_prefix, ["a", "b", "c", "d", "e"])
    sibling = await store.create(key_prefix.rstrip("/") + "x/f", widget("f"))  # not listed
    pages = []
    deletes = ["c", "a"]
    async with contextlib.aclosing(store.snapshot(key_prefix, page_size=2)) as snapshot:
        async for page in snapshot:
            pages.append(page)
            # Writes between pages do not show.
            await store.guaranteed_update(key_prefix + "e", set_size(len(pages)))
            if deletes:
                await store.delete(key_prefix + deletes.pop(0))
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert {p.revision for p in pages} == {rv(sibling)}
    assert [item for p in pages for item in p.items] == [
        (key_prefix + o["metadata"]["name"], o) for o in created]

    empty = [p async for p in store.snapshot(key_prefix + "none/", page_size=2)]
    assert [(p.revision, p.items) for p in empty] == [(await store.current_revision(), [])]


async def test_snapshot_compacted_between_pages_is_expired(
    store: ContractStore, key_prefix: str
) -> None:
    await create_widgets(store, key_prefix, ["a", "b", "c"])
    async with contextlib.aclosing(store.snapshot(key_prefix, page_size=1)) as snapshot:
        await anext(snapshot)
        await store.guaranteed_update(key_prefix + "c", set_size(1))
        await store.compact(await store.current_revision())
        with pytest.raises(ExpiredError):
            await anext(snapshot)


async def test_watch_progress_proves_nothing_changed(
    store: ContractStore, key_prefix: str
) -> None:
    """One consistent read: storage's revision, the keys under the prefix, the newest write
    after a revision; enough for a watcher to prove it is current."""
    a, _ = await create_widgets(store, key_prefix, ["a", "b"])
    since = await store.current_revision()
    progress = await store.watch_progress(key_prefix, since=since)
    assert (progress.revision, progress.count, progress.latest_write) == (since, 2, 0)
    assert progress.unchanged(2)

    elsewhere = await store.create(key_prefix.rstrip("/") + "x/c", widget("c"))
    progress = await store.watch_progress(key_prefix, since=since)
    assert progress.revision == rv(elsewhere) and progress.unchanged(2)

    updated = await store.guaranteed_update(key_prefix + "a", set_size(2))
    progress = await store.watch_progress(key_prefix, since=since)
    assert (progress.count, progress.latest_write) == (2, rv(updated))
    assert not progress.unchanged(2)

    since = rv(updated)
    await store.delete(key_prefix + "b")  # leaves no key behind: only the count shows it
    progress = await store.watch_progress(key_prefix, since=since)
    assert (progress.count, progress.latest_write) == (1, 0)
    assert not progress.unchanged(2)
    assert rv(a) < since


# -- etcd connections


async def test_etcd_down_is_unavailable_then_recovers(
    make_etcd: Callable[..., EtcdServer], key_prefix: str
) -> None:
    server = make_etcd()
    client = await connect(EtcdSettings(endpoints=(server.endpoint,), request_timeout=2.0))
    store = Etcd3Store(client)
    try:
        created = await store.create(key_prefix + "a", widget("a"))
        server.stop()
        with pytest.raises(UnavailableError, match=str(server.client_port)):
            await store.get(key_prefix + "a")
        with pytest.raises(UnavailableError):
            await store.create(key_prefix + "b", widget("b"))
        server.start()

        async def answers() -> bool:
            try:
                return await store.get(key_prefix + "a") == created
            except UnavailableError:
                return False

        await until(answers, what="the client to reconnect to the restarted etcd")
    finally:
        await client.close()


async def test_etcd_that_does_not_answer_is_unavailable(
    make_etcd: Callable[..., EtcdServer], key_prefix: str
) -> None:
    server = make_etcd()
    client = await connect(EtcdSettings(endpoints=(server.endpoint,), request_timeout=0.5))
    store = Etcd3Store(client)
    try:
        await store.create(key_prefix + "a", widget("a"))
        server.pause()
        try:
            with pytest.raises(UnavailableError, match=r"did not answer within 0\.5s"):
                await store.get(key_prefix + "a")
            with pytest.raises(UnavailableError, match="may or may not have been applied"):
                await store.create(key_prefix + "b", widget("b"))
        finally:
            server.resume()

        async def answers() -> bool:
            try:
                await store.get(key_prefix + "a")
            except UnavailableError:
                return False
            return True

        await until(answers, what="etcd to answer again")
    finally:
        await client.close()


async def test_connect_to_nothing_is_unavailable() -> None:
    with pytest.raises(UnavailableError, match="cannot reach etcd"):
        await connect(EtcdSettings(endpoints=(f"http://127.0.0.1:{free_port()}",),
                                   dial_timeout=0.5))


async def test_connect_uses_the_first_endpoint_that_answers(etcd_server: EtcdServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = await connect(EtcdSettings(endpoints=(dead, etcd_server.endpoint), dial_timeout=0.5))
    try:
        assert client.endpoint == etcd_server.endpoint
        assert await Etcd3Store(client).current_revision() > 0
    finally:
        await client.close()


async def test_fails_over_to_another_endpoint(
    make_etcd: Callable[..., EtcdServer], key_prefix: str
) -> None:
    first, second = make_etcd(), make_etcd()
    client = await connect(EtcdSettings(endpoints=(first.endpoint, second.endpoint),
                                        request_timeout=2.0, dial_timeout=1.0))
    store = Etcd3Store(client)
    try:
        assert client.endpoint == first.endpoint
        await asyncio.to_thread(first.stop)

        async def on_second() -> bool:
            try:
                await store.create(key_prefix + "a", widget("a"))
            except UnavailableError:
                return False
            return True

        await until(on_second, what="the client to move to the second endpoint")
        assert client.endpoint == second.endpoint
    finally:
        await client.close()


async def test_client_certificate_tls(
    make_etcd: Callable[..., EtcdServer], key_prefix: str, tmp_path: Path
) -> None:
    tls = make_tls_files(tmp_path)
    server = make_etcd(tls=tls)
    assert server.endpoint.startswith("https://")
    client = await connect(EtcdSettings(endpoints=(server.endpoint,), ca_file=tls.ca,
                                        cert_file=tls.client_cert, key_file=tls.client_key))
    try:
        store = Etcd3Store(client)
        created = await store.create(key_prefix + "a", widget("a"))
        assert await store.get(key_prefix + "a") == created
    finally:
        await client.close()
    # Without a client certificate etcd refuses the connection.
    with pytest.raises(UnavailableError):
        await connect(EtcdSettings(endpoints=(server.endpoint,), ca_file=tls.ca,
                                   dial_timeout=1.0))


async def test_implements_the_storage_interface(store: ContractStore) -> None:
    interface: Interface = store  # checked by mypy
    assert interface is store
    assert interface.last_sync_resource_version == 0  # it keeps none: it reads every time


async def test_endpoint_urls() -> None:
    assert parse_endpoint("http://127.0.0.1:2379") == Endpoint(
        "http://127.0.0.1:2379", "127.0.0.1:2379", tls=False)
    assert parse_endpoint("https://etcd.example:2380").tls
    assert parse_endpoint("[::1]:2379", tls_default=True) == Endpoint(
        "https://[::1]:2379", "[::1]:2379", tls=True)
    assert parse_endpoint("etcd").target == "etcd:2379"
    with pytest.raises(ValueError, match="https://host:2379"):
        parse_endpoint("unix:///run/etcd.sock")
