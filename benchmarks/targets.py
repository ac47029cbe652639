"""The two systems measured side by side, with the same operations:

- `KextTarget`: Widgets through kext's REST API over HTTPS: keep-alive HTTP/1.1 with the admin
  client certificate, one connection per worker; or (h2_pool > 0) the aggregator's path,
  HTTP/2 with the front-proxy certificate and X-Remote-* headers, the workers' requests
  multiplexed on a few pooled connections (benchmarks/h2client.py).
- `EtcdTarget`: the same objects as JSON values directly in etcd through aetcd's gRPC stubs
  (one channel shared by the workers, as kext shares one): create = put-if-absent txn,
  get = linearizable range, update = range + txn on mod_revision (retried), list = prefix range
  (serializable for resourceVersion "0", linearizable for ""), delete = delete range.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from aetcd import rpc
from aetcd.utils import prefix_range_end

from benchmarks.client import Connection, Endpoint, HTTPError, open_connections
from benchmarks.h2client import H2Lane, open_lanes
from kext.storage.etcd3 import EtcdClient

GROUP = "example.kext.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
_MAX_TXN_OPS = 128  # etcd's default --max-txn-ops

COLORS = ("red", "green", "blue")


class OperationFailed(Exception):
    """An operation got an answer other than the expected one."""


def widget(name: str, seq: int = 0) -> dict[str, Any]:
    """The Widget a client sends (what kext completes with uid, timestamps, generation)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Widget",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"size": seq % 100 + 1, "color": COLORS[seq % 3], "tags": ["bench", "kext"]},
    }


def stored_widget(namespace: str, name: str, seq: int = 0) -> bytes:
    """A Widget as kext stores it in etcd (no resourceVersion: that is the mod revision)."""
    obj = widget(name, seq)
    obj["metadata"].update({
        "namespace": namespace,
        "uid": str(uuid.uuid4()),
        "creationTimestamp": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "generation": 1,
    })
    return orjson.dumps(obj)


def _continue_token(body: bytes) -> bytes:
    """The list's metadata.continue, found near the start of the body (metadata comes before
    the items) without decoding the whole page."""
    head = body[:2048]
    at = head.find(b'"continue":"')
    if at < 0:
        return b""
    start = at + len(b'"continue":"')
    return head[start:head.find(b'"', start)]


def _fail(response_status: int, body: bytes, expected: int) -> OperationFailed:
    return OperationFailed(f"HTTP {response_status} (expected {expected}): {body[:200]!r}")


# A worker's connection: its own HTTP/1.1 connection, or its lane of a pooled HTTP/2 one.
Client = Connection | H2Lane


@dataclass
class KextTarget:
    """Widgets through kext; `connections` are opened per run (one per worker, or with
    h2_pool, lanes over that many HTTP/2 connections carrying `headers` on every request)."""

    endpoint: Endpoint
    namespace_prefix: str  # namespaces are <namespace_prefix><name>
    h2_pool: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    name: str = "kext"  # what results call it: "kext" (HTTP/1.1) or "aggregator" (HTTP/2)

    def path(self, namespace: str, name: str = "") -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace_prefix}{namespace}/widgets"
        return f"{base}/{name}" if name else base

    async def connect(self, n: int) -> list[Client]:
        if self.h2_pool:
            return list(await open_lanes(self.endpoint, n, self.h2_pool, self.headers))
        return list(await open_connections(self.endpoint, n))

    async def create(self, conn: Client, namespace: str, name: str, seq: int) -> bool:
        body = orjson.dumps(widget(name, seq))
        response = await conn.request("POST", self.path(namespace), body)
        if response.status != 201:
            raise _fail(response.status, response.body, 201)
        return True

    async def get(self, conn: Client, namespace: str, name: str) -> bool:
        response = await conn.request("GET", self.path(namespace, name))
        if response.status != 200:
            raise _fail(response.status, response.body, 200)
        return True

    async def update(self, conn: Client, namespace: str, name: str, seq: int) -> bool:
        """A merge patch: a guaranteed update (read, apply, compare-and-swap, retried)."""
        body = b'{"spec":{"size":%d}}' % (seq % 100 + 1)
        response = await conn.request("PATCH", self.path(namespace, name), body,
                                      "application/merge-patch+json")
        if response.status != 200:
            raise _fail(response.status, response.body, 200)
        return True

    async def list(self, conn: Client, namespace: str, resource_version: str) -> bool:
        query = f"?resourceVersion={resource_version}" if resource_version else ""
        response = await conn.request("GET", self.path(namespace) + query)
        if response.status != 200:
            raise _fail(response.status, response.body, 200)
        return True

    async def list_pages(self, conn: Client, namespace: str, limit: int) -> bool:
        """A whole list in pages of `limit` (limit + continue, one consistent snapshot)."""
        path = f"{self.path(namespace)}?limit={limit}"
        token = b""
        while True:
            query = f"&continue={quote(token.decode(), safe='')}" if token else ""
            response = await conn.request("GET", path + query)
            if response.status != 200:
                raise _fail(response.status, response.body, 200)
            token = _continue_token(response.body)
            if not token:
                return True

    async def delete(self, conn: Client, namespace: str, name: str) -> bool:
        response = await conn.request("DELETE", self.path(namespace, name))
        if response.status != 200:
            raise _fail(response.status, response.body, 200)
        return True

    async def list_count(self, namespace: str) -> tuple[int, str]:
        """How many items a list of namespace returns, and its resourceVersion."""
        [conn] = await self.connect(1)
        try:
            response = await conn.request("GET", self.path(namespace))
        finally:
            conn.close()
        if response.status != 200:
            raise _fail(response.status, response.body, 200)
        body = orjson.loads(response.body)
        return len(body.get("items") or []), str(body["metadata"]["resourceVersion"])

    async def sync(self, namespace: str) -> None:
        """A consistent read of one item: returns once kext has seen etcd's latest writes."""
        [conn] = await self.connect(1)
        try:
            response = await conn.request("GET", self.path(namespace) + "?limit=1")
        finally:
            conn.close()
        if response.status != 200:
            raise _fail(response.status, response.body, 200)

    async def check(self) -> None:
        """Fail clearly when kext does not answer a list of widgets."""
        try:
            await self.list_count("check")
        except (OSError, HTTPError, OperationFailed) as exc:
            raise RuntimeError(f"kext at {self.endpoint.authority} cannot list widgets: {exc}"
                               ) from None


@dataclass
class EtcdTarget:
    """The same objects directly in etcd under `prefix` (`<prefix><namespace>/<name>`)."""

    client: EtcdClient
    prefix: str

    def key(self, namespace: str, name: str = "") -> bytes:
        return f"{self.prefix}{namespace}/{name}".encode()

    async def create(self, namespace: str, name: str, seq: int) -> bool:
        key = self.key(namespace, name)
        value = stored_widget(namespace, name, seq)
        request = rpc.TxnRequest(
            compare=[rpc.Compare(key=key, result=rpc.Compare.EQUAL,
                                 target=rpc.Compare.CREATE, create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value))],
        )
        response = await self.client.kvstub.Txn(request)
        if not response.succeeded:
            raise OperationFailed(f"{key!r} already exists")
        return True

    async def get(self, namespace: str, name: str) -> bool:
        response = await self.client.kvstub.Range(rpc.RangeRequest(key=self.key(namespace, name)))
        if not response.kvs:
            raise OperationFailed(f"{self.key(namespace, name)!r} not found")
        return True

    async def update(self, namespace: str, name: str, seq: int) -> bool:
        """Read, change spec.size, write if the key's mod revision is unchanged; retry."""
        key = self.key(namespace, name)
        for _ in range(100):
            current = await self.client.kvstub.Range(rpc.RangeRequest(key=key))
            if not current.kvs:
                raise OperationFailed(f"{key!r} not found")
            kv = current.kvs[0]
            obj = orjson.loads(kv.value)
            obj["spec"]["size"] = seq % 100 + 1
            request = rpc.TxnRequest(
                compare=[rpc.Compare(key=key, result=rpc.Compare.EQUAL,
                                     target=rpc.Compare.MOD, mod_revision=kv.mod_revision)],
                success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key,
                                                                  value=orjson.dumps(obj)))],
            )
            if (await self.client.kvstub.Txn(request)).succeeded:
                return True
        raise OperationFailed(f"{key!r}: 100 conflicts in a row")

    async def list(self, namespace: str, resource_version: str) -> bool:
        key = self.key(namespace)
        request = rpc.RangeRequest(key=key, range_end=prefix_range_end(key),
                                   serializable=resource_version == "0")
        await self.client.kvstub.Range(request)
        return True

    async def list_pages(self, namespace: str, limit: int) -> bool:
        """A whole prefix in ranges of `limit` keys, all at the first page's revision."""
        key = self.key(namespace)
        end = prefix_range_end(key)
        revision = 0
        while True:
            response = await self.client.kvstub.Range(rpc.RangeRequest(
                key=key, range_end=end, limit=limit, revision=revision))
            revision = revision or response.header.revision
            if not response.more or not response.kvs:
                return True
            key = response.kvs[-1].key + b"\0"

    async def delete(self, namespace: str, name: str) -> bool:
        key = self.key(namespace, name)
        response = await self.client.kvstub.DeleteRange(rpc.DeleteRangeRequest(key=key))
        if response.deleted != 1:
            raise OperationFailed(f"{key!r} not found")
        return True

    async def current_revision(self) -> int:
        response = await self.client.kvstub.Range(rpc.RangeRequest(key=b"\0", limit=1))
        return int(response.header.revision)


async def put_many(client: EtcdClient, items: Sequence[tuple[bytes, bytes]],
                   parallel: int = 4) -> None:
    """Write many keys fast: transactions of up to 128 puts, a few at a time."""
    batches = [items[i:i + _MAX_TXN_OPS] for i in range(0, len(items), _MAX_TXN_OPS)]
    gate = asyncio.Semaphore(parallel)

    async def write(batch: Sequence[tuple[bytes, bytes]]) -> None:
        async with gate:
            await client.kvstub.Txn(rpc.TxnRequest(success=[
                rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=v)) for k, v in batch
            ]))

    await asyncio.gather(*(write(b) for b in batches))


async def delete_prefix(client: EtcdClient, prefix: str) -> None:
    key = prefix.encode()
    await client.kvstub.DeleteRange(rpc.DeleteRangeRequest(key=key,
                                                           range_end=prefix_range_end(key)))
