"""storage.Interface on etcd v3 (cf. k8s.io/apiserver pkg/storage/etcd3).

`connect(settings)` makes an `EtcdClient`: aetcd's client on a gRPC channel built here, because
aetcd only dials plaintext: client-cert TLS, a 128 MiB receive limit for large lists, a short
reconnect backoff so a restarted etcd is picked up within a second, several endpoints (the
first that answers wins; another is tried when it stops answering), and a deadline on every
call so a request never hangs on a dead etcd.

`Etcd3Store` stores objects as JSON. `metadata.resourceVersion` is never stored: it is the
etcd mod revision of the key, set on every object read. Writes are transactions that compare
the key's mod revision (optimistic concurrency, retried on conflict like GuaranteedUpdate).
Lists page through `Range` with `limit` at one pinned revision and hand out kube-apiserver's
continue tokens. Watches are one gRPC stream each, resumed from the last revision seen when
the stream breaks (etcd restart, leader loss), so no event is lost or delivered twice.

An `Etcd3Store` may be given a `StoreObserver`: it is told of every etcd request (operation,
key, duration, failure) and of what its watches receive, so the server can keep kube's etcd
metrics without storage knowing of metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aetcd
import grpc
import grpc.aio
import orjson
from aetcd import rpc
from aetcd.utils import prefix_range_end

from kext.storage.continue_token import decode_continue, encode_continue
from kext.storage.errors import (
    CorruptObjectError,
    ExpiredError,
    InvalidObjectError,
    KeyExistsError,
    KeyNotFoundError,
    OutcomeUnknownError,
    RequestTooLargeError,
    StorageError,
    TooLargeResourceVersionError,
    UnavailableError,
)
from kext.storage.interface import (
    INITIAL_EVENTS_END_ANNOTATION,
    ListOptions,
    ListResult,
    Object,
    Preconditions,
    Predicate,
    SnapshotPage,
    UpdateFunc,
    WatchEvent,
    WatchOptions,
    WatchProgress,
)
from kext.storage.settings import DEFAULT_DIAL_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, EtcdSettings
from kext.storage.versioner import (
    decode_object,
    encode_object,
    parse_resource_version,
    with_resource_version,
    without_resource_version,
)

log = logging.getLogger(__name__)
MAX_RECEIVE_MESSAGE_BYTES = 128 * 1024 * 1024  # a page of large objects can exceed gRPC's 4 MiB

# etcd's revisions are int64; a resourceVersion past that is ahead of any etcd.
_MAX_REVISION = 2**63 - 1

# The largest page the store asks etcd for while filling a filtered page (as kube-apiserver).
_MAX_FETCH_LIMIT = 10000

# Metadata asking etcd to cancel the watch when its member loses the leader, instead of
# silently serving no events from a partitioned member (clientv3.WithRequireLeader).
_REQUIRE_LEADER = (("hasleader", "true"),)

_CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
    # gRPC's default backoff grows to 120 s; etcd coming back must be noticed quickly.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Detect a silently dead etcd under an idle watch stream. etcd rejects pings more often
    # than every 5 s and pings on a connection without streams (GOAWAY too_many_pings).
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
)

# gRPC codes meaning "etcd cannot be reached or did not answer", not "the request is wrong".
_UNAVAILABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # "etcdserver: too many requests"
    }
)
# A watch stream failing with one of these will fail the same way again: do not retry.
_PERMANENT_WATCH_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


def _too_large(code: grpc.StatusCode, details: str) -> bool:
    """Whether etcd (or gRPC on either side) refused a request for its size, as kube's
    isTooLargeError reads etcd's errors (handlers/rest.go)."""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return "request is too large" in details
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details


def _maybe_sent(exc: grpc.aio.AioRpcError) -> bool:
    """Whether a failed call may have reached etcd. As etcd's client retries a mutation only
    when no connection was there to send it on (isSafeRetryMutableRPC), only gRPC's "failed
    to connect" and etcd's own refusals are known not to have been applied."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # "etcdserver: too many requests"
        return False
    return not (code == grpc.StatusCode.UNAVAILABLE and "failed to connect" in details)


class _FutureRevisionError(StorageError):
    """etcd was asked to read at a revision it has not reached yet."""


# -- the client


@dataclass(frozen=True)
class Endpoint:
    """One etcd client URL, parsed."""

    url: str
    target: str  # host:port as gRPC dials it
    tls: bool


def parse_endpoint(url: str, *, tls_default: bool = False) -> Endpoint:
    """`https://host:2379`, `http://host:2379` or a bare `host:2379` (TLS if tls_default)."""
    if "://" not in url:
        url = ("https://" if tls_default else "http://") + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"etcd endpoint {url!r}: expected a URL like https://host:2379")
    host = parts.hostname
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return Endpoint(url=url, target=f"{host}:{parts.port or 2379}", tls=parts.scheme == "https")


class EtcdClient(aetcd.Client):
    """aetcd's client on a channel built by kext (TLS, endpoints, limits, timeouts).

    Everything aetcd offers (put, get, transaction, ...) works on it; kext's storage uses the
    raw stubs through `kv_range`, `kv_txn`, `kv_compact` and `open_watch`, which raise
    `StorageError`s. The gRPC channel reconnects by itself when etcd comes back.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        dial_timeout: float = DEFAULT_DIAL_TIMEOUT,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is required")
        super().__init__(timeout=request_timeout)
        tls_default = bool(ca_file or cert_file)
        self.endpoints = [parse_endpoint(e, tls_default=tls_default) for e in endpoints]
        self.request_timeout = request_timeout
        self.dial_timeout = dial_timeout
        self._ca_file, self._cert_file, self._key_file = ca_file, cert_file, key_file
        self._current = 0  # index into endpoints of the channel in use
        self._dial_lock = asyncio.Lock()
        self._failover_task: asyncio.Task[None] | None = None
        self._closed = False
        self.watchstub: Any = None

    @property
    def endpoint(self) -> str:
        """The URL of the etcd member this client talks to."""
        return self.endpoints[self._current].url

    @property
    def closed(self) -> bool:
        """Whether close() was called (the client then refuses every call)."""
        return self._closed

    def _credentials(self) -> grpc.ChannelCredentials:
        def read(path: str) -> bytes | None:
            if not path:
                return None
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError as exc:
                raise UnavailableError(
                    "", f"cannot read the etcd TLS file {path}: {exc.strerror}"
                ) from None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self._ca_file),
            private_key=read(self._key_file),
            certificate_chain=read(self._cert_file),
        )

    def _channel(self, endpoint: Endpoint) -> grpc.aio.Channel:
        if endpoint.tls:
            return grpc.aio.secure_channel(
                endpoint.target, self._credentials(), options=_CHANNEL_OPTIONS
            )
        return grpc.aio.insecure_channel(endpoint.target, options=_CHANNEL_OPTIONS)

    def _attach(self, channel: grpc.aio.Channel, index: int) -> None:
        """Point aetcd's stubs (and ours) at channel, as aetcd.Client.connect does."""
        self.channel = channel
        self._current = index
        self.kvstub = rpc.KVStub(channel)
        self.watchstub = rpc.WatchStub(channel)
        self.clusterstub = rpc.ClusterStub(channel)
        self.leasestub = rpc.LeaseStub(channel)
        self.maintenancestub = rpc.MaintenanceStub(channel)
        self._watcher = aetcd.Watcher(
            self.watchstub, timeout=self.request_timeout, metadata=self.metadata
        )

    async def _dial(self, order: Sequence[int]) -> tuple[grpc.aio.Channel, int] | None:
        """The first endpoint in order whose connection comes up within dial_timeout."""
        for index in order:
            endpoint = self.endpoints[index]
            channel = self._channel(endpoint)
            try:
                await asyncio.wait_for(channel.channel_ready(), self.dial_timeout)
                # A call, not just a connection: with TLS 1.3 a rejected client certificate
                # only shows after the handshake.
                await rpc.MaintenanceStub(channel).Status(
                    rpc.StatusRequest(), timeout=self.dial_timeout
                )
            except TimeoutError:
                reason = f"no answer within {self.dial_timeout:g}s"
            except grpc.aio.AioRpcError as exc:
                reason = f"{exc.code().name}: {exc.details()}"
            else:
                return channel, index
            await channel.close()
            log.warning("etcd at %s: %s", endpoint.url, reason)
        return None

    async def connect(self) -> None:
        """Connect to the first endpoint that answers (in the configured order).

        Raises UnavailableError when none answers within dial_timeout; a later call tries
        again. Once connected, the channel reconnects by itself after etcd restarts."""
        if self._connected.is_set():
            return
        if self._closed:
            raise UnavailableError("", "the etcd client is closed")
        async with self._dial_lock:
            if self._connected.is_set():
                return
            found = await self._dial(range(len(self.endpoints)))
            if found is None:
                urls = ", ".join(e.url for e in self.endpoints)
                raise UnavailableError(
                    "", f"cannot reach etcd at {urls}: no endpoint answered within "
                    f"{self.dial_timeout:g}s"
                )
            self._attach(*found)
            self._connected.set()

    def failover_if_down(self) -> None:
        """Called when etcd did not answer: with several endpoints, move (in the background)
        to the next one that answers, unless the current one has come back meanwhile."""
        if len(self.endpoints) < 2 or self._closed:
            return
        if self._failover_task is not None and not self._failover_task.done():
            return
        self._failover_task = asyncio.get_running_loop().create_task(self._failover())

    async def _failover(self) -> None:
        async with self._dial_lock:
            old = self.channel
            if old is None or self._closed:
                return
            state = old.get_state(try_to_connect=True)
            if state in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.IDLE):
                return
            n = len(self.endpoints)
            order = [(self._current + i) % n for i in range(1, n)]
            found = await self._dial(order)
            if found is None:
                return  # keep the current channel: it keeps reconnecting by itself
            log.warning("etcd: switching from %s to %s", self.endpoint,
                        self.endpoints[found[1]].url)
            old_watcher = self._watcher
            self._attach(*found)
            if old_watcher is not None:
                await old_watcher.shutdown()
            await old.close(grace=1.0)

    async def close(self) -> None:
        """Close the channel; calls in flight and open watches end with UnavailableError."""
        self._closed = True
        if self._failover_task is not None:
            self._failover_task.cancel()
        await super().close()

    def storage_error(self, exc: grpc.aio.AioRpcError, key: str) -> StorageError:
        """The StorageError for a failed etcd call on key."""
        code, details = exc.code(), exc.details() or ""
        if _too_large(code, details):
            return RequestTooLargeError(key, "etcdserver: request is too large")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return UnavailableError(
                key, f"etcd at {self.endpoint} did not answer within {self.request_timeout:g}s"
            )
        if code in _UNAVAILABLE_CODES:
            if code == grpc.StatusCode.UNAVAILABLE:
                self.failover_if_down()
            return UnavailableError(key, f"etcd at {self.endpoint} is unavailable: {details}")
        if "required revision has been compacted" in details:
            return ExpiredError(key, details)
        if "required revision is a future revision" in details:
            return _FutureRevisionError(key, details)
        return StorageError(key, f"etcd request for {key!r} failed: {code.name}: {details}")

    async def kv_range(self, request: Any, *, key: str = "") -> Any:
        """KV.Range with the request timeout."""
        await self.connect()
        try:
            return await self.kvstub.Range(request, timeout=self.request_timeout)
        except grpc.aio.AioRpcError as exc:
            raise self.storage_error(exc, key) from None

    async def kv_txn(self, request: Any, *, key: str = "") -> Any:
        """KV.Txn with the request timeout."""
        await self.connect()
        try:
            return await self.kvstub.Txn(request, timeout=self.request_timeout)
        except grpc.aio.AioRpcError as exc:
            error = self.storage_error(exc, key)
            if isinstance(error, UnavailableError) and _maybe_sent(exc):
                # etcd may have applied the write: a client must not read "not applied"
                error = OutcomeUnknownError(
                    key, f"{error}; the write may or may not have been applied")
            raise error from None

    async def kv_compact(self, revision: int, *, physical: bool = True) -> None:
        """Compact etcd's history up to revision (physical: wait until it is applied)."""
        await self.connect()
        request = rpc.CompactionRequest(revision=revision, physical=physical)
        try:
            await self.kvstub.Compact(request, timeout=self.request_timeout)
        except grpc.aio.AioRpcError as exc:
            raise self.storage_error(exc, "") from None

    async def open_watch(self) -> Any:
        """A new Watch bidi stream (no deadline), cancelled by etcd if its member has no leader."""
        await self.connect()
        return self.watchstub.Watch(metadata=_REQUIRE_LEADER)


async def connect(settings: EtcdSettings) -> EtcdClient:
    """An EtcdClient connected to the first of settings.endpoints that answers.

    Raises UnavailableError when no endpoint answers within settings.dial_timeout."""
    client = EtcdClient(
        settings.endpoints,
        ca_file=settings.ca_file,
        cert_file=settings.cert_file,
        key_file=settings.key_file,
        request_timeout=settings.request_timeout,
        dial_timeout=settings.dial_timeout,
    )
    await client.connect()
    return client


# -- encoding


def _decode(key: bytes, value: bytes, revision: int) -> Object:
    """The object in an etcd KeyValue, with its resourceVersion."""
    return decode_object(_str(key), value, revision)


def _str(key: str | bytes) -> str:
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else key


def _prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with prefix."""
    end: bytes = prefix_range_end(prefix)
    return end


# -- the store


class StoreObserver(Protocol):
    """What an Etcd3Store reports as it works (for metrics: the server's). Keys are full etcd
    keys, or the prefix a list or watch covers. Called on the event loop; must not block."""

    def etcd_request(self, operation: str, key: str, seconds: float, failed: bool) -> None:
        """One etcd call done: operation as kube names it (get, create, update, delete, list,
        listWithCount, getCurrentResourceVersion, compact)."""

    def etcd_events(self, key: str, count: int) -> None:
        """A watch of key received count events from etcd."""

    def etcd_bookmark(self, key: str) -> None:
        """A watch of key received a progress notification."""

    def etcd_watch_started(self, key: str) -> None:
        """A watch of key began (its first iteration)."""


class Etcd3Store:
    """storage.Interface on etcd v3; keys are full etcd keys, values JSON objects."""

    def __init__(self, client: EtcdClient, observer: StoreObserver | None = None) -> None:
        self.client = client
        self.observer = observer

    async def _range(self, operation: str, request: Any, key: str) -> Any:
        """KV.Range, reported to the observer."""
        observer = self.observer
        if observer is None:
            return await self.client.kv_range(request, key=key)
        started = time.monotonic()
        try:
            response = await self.client.kv_range(request, key=key)
        except BaseException:
            observer.etcd_request(operation, key, time.monotonic() - started, True)
            raise
        observer.etcd_request(operation, key, time.monotonic() - started, False)
        return response

    async def _txn(self, operation: str, request: Any, key: str) -> Any:
        """KV.Txn, reported to the observer."""
        observer = self.observer
        if observer is None:
            return await self.client.kv_txn(request, key=key)
        started = time.monotonic()
        try:
            response = await self.client.kv_txn(request, key=key)
        except BaseException:
            observer.etcd_request(operation, key, time.monotonic() - started, True)
            raise
        observer.etcd_request(operation, key, time.monotonic() - started, False)
        return response

    async def _get_kv(self, key: str, *, revision: int = 0, serializable: bool = False) -> Any:
        """The KeyValue at key (None when absent) and the response header."""
        response = await self._range(
            "get",
            rpc.RangeRequest(key=key.encode(), revision=revision, serializable=serializable),
            key,
        )
        return (response.kvs[0] if response.kvs else None), response.header

    async def create(self, key: str, obj: Object) -> Object:
        """Store obj at key if absent (KeyExistsError otherwise); returns it with its RV.

        obj itself is not modified; the result is a shallow copy (nested values are shared)."""
        stored = without_resource_version(obj)
        key_b = key.encode()
        txn = rpc.TxnRequest(
            compare=[
                rpc.Compare(
                    key=key_b,
                    target=rpc.Compare.CREATE,
                    result=rpc.Compare.EQUAL,
                    create_revision=0,
                )
            ],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key_b,
                                                               value=encode_object(key, stored)))],
        )
        response = await self._txn("create", txn, key)
        if not response.succeeded:
            raise KeyExistsError(key, f"key exists: {key}")
        return with_resource_version(stored, response.header.revision)

    async def get(
        self, key: str, *, resource_version: str = "", resource_version_match: str = ""
    ) -> Object:
        """The object at key (KeyNotFoundError if absent).

        resource_version "" = the most recent (quorum read); "0" = any (a serializable read);
        "N" = the object as it was at revision N (ExpiredError if compacted,
        TooLargeResourceVersionError if etcd has not reached N). With
        resource_version_match="NotOlderThan", "N" instead reads the most recent state and
        only checks that etcd has reached N (kube-apiserver's GET ?resourceVersion=N)."""
        revision, serializable, minimum = 0, False, 0
        if resource_version == "0":
            serializable = True
        elif resource_version:
            n = parse_resource_version(key, resource_version)
            if resource_version_match == "NotOlderThan":
                minimum = n
            else:
                revision = n
        if revision > _MAX_REVISION:  # etcd's revisions are int64: this one is ahead of it
            raise TooLargeResourceVersionError(key, revision, await self.current_revision())
        try:
            kv, header = await self._get_kv(key, revision=revision, serializable=serializable)
        except ExpiredError:
            raise ExpiredError(
                key, f"resource version {resource_version} has been compacted"
            ) from None
        except _FutureRevisionError:
            raise TooLargeResourceVersionError(
                key, revision, await self.current_revision()
            ) from None
        if minimum > header.revision:
            raise TooLargeResourceVersionError(key, minimum, header.revision)
        if kv is None:
            raise KeyNotFoundError(key, f"key not found: {key}")
        return _decode(kv.key, kv.value, kv.mod_revision)

    async def delete(
        self,
        key: str,
        *,
        preconditions: Preconditions | None = None,
        validate: Callable[[Object], Awaitable[None]] | None = None,
        cached: Object | None = None,
    ) -> Object:
        """Delete key if the preconditions hold and validate passes (both checked against the
        current object, retried on concurrent change). Returns the deleted object with the
        delete's revision as resourceVersion. cached (e.g. the watch cache's copy, not mutated)
        is taken as the current object so a delete of an up-to-date object costs one
        transaction, as kube's cachedExistingObject; a stale one costs one retry."""
        key_b = key.encode()
        kv: Any = None
        if cached is not None:
            value = orjson.dumps(cached)
            mod_revision = int(cached["metadata"]["resourceVersion"])
        else:
            kv, _ = await self._get_kv(key)
        while True:
            from_cache = kv is None and cached is not None
            if kv is not None:
                value, mod_revision = kv.value, kv.mod_revision
            elif cached is None:
                raise KeyNotFoundError(key, f"key not found: {key}")
            cached = None  # only the first attempt may use it
            current = _decode(key_b, value, mod_revision)
            try:
                if preconditions is not None:
                    preconditions.check(key, current)
                if validate is not None:
                    await validate(_decode(key_b, value, mod_revision))
            except Exception:
                if not from_cache:
                    raise
                # A cached copy may be stale: decide on what etcd holds (as kube does).
                kv, _ = await self._get_kv(key)
                if kv is None:
                    raise KeyNotFoundError(key, f"key not found: {key}") from None
                continue
            txn = rpc.TxnRequest(
                compare=[
                    rpc.Compare(
                        key=key_b,
                        target=rpc.Compare.MOD,
                        result=rpc.Compare.EQUAL,
                        mod_revision=mod_revision,
                    )
                ],
                success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key_b))],
                failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key_b))],
            )
            response = await self._txn("delete", txn, key)
            if response.succeeded:
                current["metadata"]["resourceVersion"] = str(response.header.revision)
                return current
            # Changed (or deleted) since read: the failure branch carries the new state.
            kvs = response.responses[0].response_range.kvs
            kv = kvs[0] if kvs else None

    async def guaranteed_update(
        self,
        key: str,
        update: UpdateFunc,
        *,
        ignore_not_found: bool = False,
        preconditions: Preconditions | None = None,
    ) -> Object:
        """Read-modify-write with a compare on mod revision, retried on conflict. If update
        returns an object equal to the current one nothing is written and the current object
        is returned. With ignore_not_found, update receives None for an absent key and its
        result is created."""
        key_b = key.encode()
        kv, _ = await self._get_kv(key)
        while True:
            if kv is None and not ignore_not_found:
                raise KeyNotFoundError(key, f"key not found: {key}")
            current = None if kv is None else _decode(kv.key, kv.value, kv.mod_revision)
            if preconditions is not None:
                preconditions.check(key, current)
            new = without_resource_version(await update(current))
            if kv is not None and new == orjson.loads(kv.value):
                # Nothing changed: no write, so the resourceVersion does not move either.
                return _decode(kv.key, kv.value, kv.mod_revision)
            txn = rpc.TxnRequest(
                compare=[
                    rpc.Compare(
                        key=key_b,
                        target=rpc.Compare.MOD,
                        result=rpc.Compare.EQUAL,
                        # An absent key compares as mod revision 0.
                        mod_revision=0 if kv is None else kv.mod_revision,
                    )
                ],
                success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key_b,
                                                                   value=encode_object(key, new)))],
                failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key_b))],
            )
            response = await self._txn("update", txn, key)
            if response.succeeded:
                return with_resource_version(new, response.header.revision)
            log.debug("guaranteed update of %s conflicted, retrying", key)
            kvs = response.responses[0].response_range.kvs
            kv = kvs[0] if kvs else None

    async def list(self, key_prefix: str, options: ListOptions) -> ListResult:
        """Objects under key_prefix (which ends with '/'), in key order.

        As kube-apiserver's etcd3 GetList: pages come from one revision (pinned by the first
        page, carried by the continue token); with a predicate, etcd is read in growing
        batches until `limit` objects match; remaining_item_count only without predicate."""
        recursive = options.recursive
        if recursive and not key_prefix.endswith("/"):
            key_prefix += "/"
        prefix_b = key_prefix.encode()
        range_end = _prefix_end(prefix_b) if recursive else b""
        limit = max(options.limit, 0)
        paging = limit > 0
        predicate = options.predicate

        start = prefix_b
        revision = 0  # 0 = the most recent; pinned after the first fetch
        minimum = 0  # NotOlderThan: etcd must have reached this revision
        serializable = False
        continuing = bool(recursive and options.continue_token)
        if continuing:
            start_key, token_rv = decode_continue(options.continue_token, key_prefix)
            start = start_key.encode()
            revision = max(token_rv, 0)
        elif options.resource_version:
            n = parse_resource_version(key_prefix, options.resource_version)
            match = options.resource_version_match
            if match == "Exact":
                if n == 0:
                    raise InvalidObjectError(
                        key_prefix, "resourceVersionMatch=Exact needs a resourceVersion > 0"
                    )
                revision = n
            elif match == "NotOlderThan":
                minimum = n
            elif match == "":
                # The legacy rule: a paginated list at N is a list exactly at N.
                if paging and n > 0:
                    revision = n
                else:
                    minimum = n
            else:
                raise InvalidObjectError(
                    key_prefix, f"unknown resourceVersionMatch value: {match!r}"
                )
            serializable = n == 0  # "0" = any revision will do

        if revision > _MAX_REVISION:  # etcd's revisions are int64: this one is ahead of it
            raise TooLargeResourceVersionError(key_prefix, revision, await self.current_revision())
        items: list[Object] = []
        last_key = b""
        fetch_limit = limit
        while True:
            request = rpc.RangeRequest(
                key=start,
                range_end=range_end,
                limit=fetch_limit,
                revision=revision,
                serializable=serializable,
            )
            try:
                response = await self._range("list", request, key_prefix)
            except ExpiredError:
                if continuing:
                    raise ExpiredError(
                        key_prefix,
                        "The provided continue parameter is too old to display a consistent "
                        "list result. You can start a new list without the continue "
                        "parameter.",
                    ) from None
                raise ExpiredError(
                    key_prefix, "The resourceVersion for the provided list is too old."
                ) from None
            except _FutureRevisionError:
                raise TooLargeResourceVersionError(
                    key_prefix, revision, await self.current_revision()
                ) from None
            if minimum > response.header.revision:
                raise TooLargeResourceVersionError(key_prefix, minimum, response.header.revision)
            if revision == 0:
                revision = response.header.revision
            has_more = response.more
            if not response.kvs and has_more:
                raise StorageError(key_prefix, "etcd returned no keys but said more remain")
            for kv in response.kvs:
                if paging and len(items) >= limit:
                    has_more = True
                    break
                last_key = kv.key
                obj = _decode(kv.key, kv.value, kv.mod_revision)
                if predicate is None or predicate(obj):
                    items.append(obj)
            if not has_more or not paging or len(items) >= limit:
                break
            # The predicate dropped objects: read on after the last key, in bigger batches.
            fetch_limit = min(fetch_limit * 2, max(_MAX_FETCH_LIMIT, limit))
            start = last_key + b"\x00"

        if not has_more:
            return ListResult(items=items, resource_version=str(revision))
        token = encode_continue(last_key.decode() + "\x00", key_prefix, revision)
        remaining = None
        if predicate is None:
            # count is every key from this page's start; a page took `limit` of them.
            remaining = response.count - limit
        return ListResult(
            items=items,
            resource_version=str(revision),
            continue_token=token,
            remaining_item_count=remaining,
        )

    async def watch(
        self,
        key_prefix: str,
        *,
        resource_version: int | None,
        predicate: Predicate | None = None,
        options: WatchOptions | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Every change under key_prefix after resource_version (0 or None = from now), in order.

        Raises ExpiredError (when iterated) if resource_version is compacted. When the stream
        to etcd breaks (etcd restarted, leader lost), it is re-opened with backoff from the
        last revision delivered + 1, so nothing is lost or repeated. With a predicate, an
        object that stops matching is DELETED and one that starts matching is ADDED (as
        kube-apiserver's etcd3 watcher).

        options.send_initial_events: first ADDED for every selected object of a consistent
        list at etcd's current revision (TooLargeResourceVersionError if etcd has not reached
        resource_version), then, with allow_bookmarks, a BOOKMARK annotated
        INITIAL_EVENTS_END_ANNOTATION at the list's revision, then every change after it.
        allow_bookmarks brings no periodic bookmarks here (as kube's etcd3 watcher: those are
        the watch cache's). options.progress_notify asks etcd for periodic progress, delivered
        as BOOKMARK events (key = key_prefix, object = {metadata: {resourceVersion}}).
        Closing the iterator (aclose, or leaving `async for`) cancels the etcd watch."""
        options = options or WatchOptions()
        recursive = options.recursive
        if recursive and not key_prefix.endswith("/"):
            key_prefix += "/"
        observer = self.observer
        if observer is not None:
            observer.etcd_watch_started(key_prefix)
        key_b = key_prefix.encode()
        range_end = _prefix_end(key_b) if recursive else b""
        last = resource_version or 0  # the revision everything up to has been delivered
        if options.send_initial_events:
            minimum, last = last, 0
            async with contextlib.aclosing(self._state(key_prefix, recursive)) as pages:
                async for page in pages:
                    if page.revision < minimum:
                        raise TooLargeResourceVersionError(key_prefix, minimum, page.revision)
                    last = page.revision
                    for key, obj in page.items:
                        if predicate is None or predicate(obj):
                            yield WatchEvent("ADDED", key, obj, None, last)
            if options.allow_bookmarks:
                yield WatchEvent(
                    "BOOKMARK", key_prefix,
                    {"metadata": {"resourceVersion": str(last),
                                  "annotations": {INITIAL_EVENTS_END_ANNOTATION: "true"}}},
                    None, last,
                )
        progress_notify = options.progress_notify
        backoff = _Backoff()
        failing = False  # since the last warning, until the watch is re-created
        while True:
            call = None
            try:
                call = await self.client.open_watch()
                create = rpc.WatchCreateRequest(
                    key=key_b,
                    range_end=range_end,
                    start_revision=last + 1 if last else 0,
                    prev_kv=True,
                    progress_notify=progress_notify,
                )
                await call.write(rpc.WatchRequest(create_request=create))
                while True:
                    response = await call.read()
                    if response is grpc.aio.EOF:
                        raise _StreamBroken("etcd closed the watch stream")
                    if response.compact_revision:
                        raise ExpiredError(
                            key_prefix,
                            f"too old resource version: {last} "
                            f"({response.compact_revision})",
                        )
                    if response.canceled and response.created:
                        # Refused outright (e.g. permission denied): retrying cannot help.
                        raise StorageError(
                            key_prefix, f"etcd refused the watch on {key_prefix}: "
                            f"{response.cancel_reason or 'no reason given'}",
                        )
                    if response.canceled:
                        raise _StreamBroken(
                            f"etcd cancelled the watch: {response.cancel_reason or 'no reason'}"
                        )
                    if response.created:
                        if not last:
                            last = response.header.revision
                        if failing:
                            log.info("etcd watch on %s resumed at revision %d", key_prefix, last)
                            failing = False
                        backoff.reset()
                        continue
                    if not response.events:
                        # A progress notification: nothing under the prefix up to this revision.
                        if observer is not None:
                            observer.etcd_bookmark(key_prefix)
                        if progress_notify and response.header.revision > last:
                            last = response.header.revision
                            yield WatchEvent(
                                type="BOOKMARK",
                                key=key_prefix,
                                object={"metadata": {"resourceVersion": str(last)}},
                                prev_object=None,
                                revision=last,
                            )
                        continue
                    if observer is not None:
                        observer.etcd_events(key_prefix, len(response.events))
                    for event in response.events:
                        watch_event = _watch_event(event, predicate)
                        if watch_event is not None:
                            yield watch_event
                    # etcd never splits one revision's events across responses.
                    last = response.events[-1].kv.mod_revision
            except grpc.aio.AioRpcError as exc:
                if exc.code() in _PERMANENT_WATCH_CODES or self.client.closed:
                    raise self.client.storage_error(exc, key_prefix) from None
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    self.client.failover_if_down()
                reason = f"{exc.code().name}: {exc.details()}"
            except UnavailableError as exc:  # could not (re)connect
                if self.client.closed:
                    raise
                reason = str(exc)
            except _StreamBroken as exc:
                if self.client.closed:
                    raise UnavailableError(key_prefix, "the etcd client is closed") from None
                reason = str(exc)
            finally:
                if call is not None:
                    call.cancel()  # ends the stream, so etcd drops the watch
            if not failing:
                failing = True
                log.warning(
                    "etcd watch on %s broke (%s); resuming after revision %d",
                    key_prefix, reason, last,
                )
            else:
                log.debug("etcd watch on %s still failing: %s", key_prefix, reason)
            await backoff.sleep()

    async def _state(self, key: str, recursive: bool) -> AsyncGenerator[SnapshotPage, None]:
        """What is stored now: a snapshot of the prefix key, or the one key."""
        if recursive:
            async with contextlib.aclosing(self.snapshot(key, page_size=_MAX_FETCH_LIMIT)) as pages:
                async for page in pages:
                    yield page
            return
        kv, header = await self._get_kv(key)
        items = [] if kv is None else [(key, _decode(kv.key, kv.value, kv.mod_revision))]
        yield SnapshotPage(int(header.revision), items)

    async def snapshot(
        self, key_prefix: str, *, page_size: int
    ) -> AsyncGenerator[SnapshotPage, None]:
        """Every object under key_prefix with its key, page_size keys per Range request: the
        first at etcd's current revision, the others pinned to it (ExpiredError if etcd
        compacts it meanwhile)."""
        if page_size < 1:
            raise ValueError("page_size must be positive")
        if not key_prefix.endswith("/"):
            key_prefix += "/"
        start = key_prefix.encode()
        range_end = _prefix_end(start)
        revision = 0
        while True:
            request = rpc.RangeRequest(
                key=start, range_end=range_end, limit=page_size, revision=revision
            )
            response = await self._range("list", request, key_prefix)
            if revision == 0:
                revision = int(response.header.revision)
            yield SnapshotPage(revision, [
                (_str(kv.key), _decode(kv.key, kv.value, kv.mod_revision)) for kv in response.kvs
            ])
            if not response.more or not response.kvs:
                return
            start = response.kvs[-1].key + b"\x00"

    async def watch_progress(self, key_prefix: str, *, since: int) -> WatchProgress:
        """One read-only transaction at etcd's current revision: the number of keys under
        key_prefix, and the newest mod revision among those written after since."""
        if not key_prefix.endswith("/"):
            key_prefix += "/"
        prefix_b = key_prefix.encode()
        range_end = _prefix_end(prefix_b)
        total = rpc.RangeRequest(key=prefix_b, range_end=range_end, count_only=True)
        changed = rpc.RangeRequest(
            key=prefix_b,
            range_end=range_end,
            keys_only=True,
            min_mod_revision=since + 1,
            sort_target=rpc.RangeRequest.MOD,
            sort_order=rpc.RangeRequest.DESCEND,
            limit=1,
        )
        txn = rpc.TxnRequest(success=[
            rpc.RequestOp(request_range=total),
            rpc.RequestOp(request_range=changed),
        ])
        response = await self._txn("getCurrentResourceVersion", txn, key_prefix)
        kvs = response.responses[1].response_range.kvs
        return WatchProgress(
            revision=int(response.header.revision),
            count=int(response.responses[0].response_range.count),
            latest_write=int(kvs[0].mod_revision) if kvs else 0,
        )

    @property
    def last_sync_resource_version(self) -> int:
        """0: this store reads etcd on every call and keeps no revision of its own."""
        return 0

    async def current_revision(self) -> int:
        """etcd's current revision (a quorum read)."""
        response = await self._range(
            "getCurrentResourceVersion", rpc.RangeRequest(key=b"\x00", count_only=True), ""
        )
        return int(response.header.revision)

    async def count(self, key_prefix: str) -> int:
        """How many keys are under key_prefix."""
        if not key_prefix.endswith("/"):
            key_prefix += "/"
        prefix_b = key_prefix.encode()
        response = await self._range(
            "listWithCount",
            rpc.RangeRequest(key=prefix_b, range_end=_prefix_end(prefix_b), count_only=True),
            key_prefix,
        )
        return int(response.count)

    async def compact(self, revision: int) -> None:
        """Compact etcd's history up to revision (waits until applied). For tests and a
        compactor: reads and watches before revision then fail with ExpiredError."""
        started, failed = time.monotonic(), True
        try:
            await self.client.kv_compact(revision, physical=True)
            failed = False
        finally:
            if self.observer is not None:
                self.observer.etcd_request("compact", "", time.monotonic() - started, failed)


class _StreamBroken(Exception):
    """The watch stream ended without an error from gRPC; it is re-opened."""


class _Backoff:
    """Exponential backoff for re-opening a watch: 0.1 s doubling up to 2 s."""

    def __init__(self, initial: float = 0.1, maximum: float = 2.0) -> None:
        self.initial, self.maximum = initial, maximum
        self.delay = initial

    def reset(self) -> None:
        self.delay = self.initial

    async def sleep(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.maximum)


def _watch_event(event: Any, predicate: Predicate | None) -> WatchEvent | None:
    """The WatchEvent for one etcd event, or None when predicate selects neither side."""
    kv = event.kv
    key = _str(kv.key)
    revision = kv.mod_revision
    prev = None
    if event.HasField("prev_kv"):
        prev = _decode(event.prev_kv.key, event.prev_kv.value, event.prev_kv.mod_revision)
    if event.type == rpc.Event.DELETE:
        if prev is None:
            raise CorruptObjectError(
                key, f"etcd sent a delete of {key} at revision {revision} without the object"
            )
        if predicate is not None and not predicate(prev):
            return None
        return WatchEvent("DELETED", key, with_resource_version(prev, revision), prev, revision)
    obj = _decode(kv.key, kv.value, revision)
    created = kv.create_revision == revision
    if created:
        prev = None  # a new key: an earlier value (if any) belonged to a deleted object
    if predicate is None:
        return WatchEvent("ADDED" if created else "MODIFIED", key, obj, prev, revision)
    matches = predicate(obj)
    prev_matches = prev is not None and predicate(prev)
    if matches and prev_matches:
        return WatchEvent("MODIFIED", key, obj, prev, revision)
    if matches:
        return WatchEvent("ADDED", key, obj, prev, revision)
    if prev_matches:
        assert prev is not None
        # Left the selection: DELETED with the last matching state, at this revision.
        return WatchEvent("DELETED", key, with_resource_version(prev, revision), prev, revision)
    return None
