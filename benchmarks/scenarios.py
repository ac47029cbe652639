"""The request/response scenarios, each run through kext and directly on etcd at the same
concurrency: how one operation is issued against each target, and what it needs seeded."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from benchmarks.targets import Client, EtcdTarget, KextTarget

Operation = Callable[[int, int], Awaitable[bool]]


@dataclass(frozen=True)
class Workload:
    """The operation (worker index, sequence number) -> success, and for a run that is not
    timed, how many operations there are."""

    op: Operation
    total: int | None = None


# A workload factory per target: (target, the workers' connections for kext, concurrency).
KextOp = Callable[[KextTarget, list[Client], int], Workload]
EtcdOp = Callable[[EtcdTarget, int], Workload]

POOL = "pool"  # the namespace of the objects get and update work on
PAGE = 500  # the page size of paginated lists (client-go's reflector uses 500)


@dataclass
class Created:
    """Names created per (target, concurrency), for the delete scenario to delete."""

    names: dict[tuple[str, int], list[str]] = field(default_factory=dict)

    def add(self, target: str, level: int, name: str) -> None:
        self.names.setdefault((target, level), []).append(name)

    def take(self, target: str, level: int) -> list[str]:
        return self.names.pop((target, level), [])


@dataclass(frozen=True)
class Scenario:
    """One row family of the report: an operation on both targets at each concurrency."""

    name: str
    title: str
    kext_op: KextOp
    etcd_op: EtcdOp
    timed: bool = True  # False: runs until its work list (e.g. objects to delete) is used up
    warmup: bool = True


def create_namespace(level: int) -> str:
    return f"create-c{level}"


def crud_scenarios(pool_size: int, created: Created, small: int, large: int
                   ) -> list[Scenario]:
    """create, get, update, delete, and list of `small` and `large` objects at
    resourceVersion "0" and ""."""

    def pick(seq: int) -> str:
        return f"p{random.randrange(pool_size)}"

    def kext_create(t: KextTarget, conns: list[Client], level: int
                    ) -> Workload:
        ns = create_namespace(level)
        tag = f"{random.getrandbits(24):06x}"  # warmup and measured runs use distinct names

        async def op(worker: int, seq: int) -> bool:
            name = f"w{tag}-{seq}"
            ok = await t.create(conns[worker], ns, name, seq)
            created.add(t.name, level, name)
            return ok
        return Workload(op)

    def etcd_create(t: EtcdTarget, level: int) -> Workload:
        ns = create_namespace(level)
        tag = f"{random.getrandbits(24):06x}"

        async def op(worker: int, seq: int) -> bool:
            name = f"w{tag}-{seq}"
            ok = await t.create(ns, name, seq)
            created.add("etcd", level, name)
            return ok
        return Workload(op)

    def kext_get(t: KextTarget, conns: list[Client], level: int
                 ) -> Workload:
        async def op(worker: int, seq: int) -> bool:
            return await t.get(conns[worker], POOL, pick(seq))
        return Workload(op)

    def etcd_get(t: EtcdTarget, level: int) -> Workload:
        async def op(worker: int, seq: int) -> bool:
            return await t.get(POOL, pick(seq))
        return Workload(op)

    def kext_update(t: KextTarget, conns: list[Client], level: int
                    ) -> Workload:
        async def op(worker: int, seq: int) -> bool:
            return await t.update(conns[worker], POOL, pick(seq), seq)
        return Workload(op)

    def etcd_update(t: EtcdTarget, level: int) -> Workload:
        async def op(worker: int, seq: int) -> bool:
            return await t.update(POOL, pick(seq), seq)
        return Workload(op)

    def kext_delete(t: KextTarget, conns: list[Client], level: int
                    ) -> Workload:
        ns, names = create_namespace(level), created.take(t.name, level)

        async def op(worker: int, seq: int) -> bool:
            return await t.delete(conns[worker], ns, names[seq])
        return Workload(op, len(names))

    def etcd_delete(t: EtcdTarget, level: int) -> Workload:
        ns, names = create_namespace(level), created.take("etcd", level)

        async def op(worker: int, seq: int) -> bool:
            return await t.delete(ns, names[seq])
        return Workload(op, len(names))

    def kext_list(namespace: str, rv: str) -> KextOp:
        def make(t: KextTarget, conns: list[Client], level: int
                 ) -> Workload:
            async def op(worker: int, seq: int) -> bool:
                return await t.list(conns[worker], namespace, rv)
            return Workload(op)
        return make

    def etcd_list(namespace: str, rv: str) -> EtcdOp:
        def make(t: EtcdTarget, level: int) -> Workload:
            async def op(worker: int, seq: int) -> bool:
                return await t.list(namespace, rv)
            return Workload(op)
        return make

    def kext_pages(namespace: str, limit: int) -> KextOp:
        def make(t: KextTarget, conns: list[Client], level: int) -> Workload:
            async def op(worker: int, seq: int) -> bool:
                return await t.list_pages(conns[worker], namespace, limit)
            return Workload(op)
        return make

    def etcd_pages(namespace: str, limit: int) -> EtcdOp:
        def make(t: EtcdTarget, level: int) -> Workload:
            async def op(worker: int, seq: int) -> bool:
                return await t.list_pages(namespace, limit)
            return Workload(op)
        return make

    scenarios = [
        Scenario("create", "create (POST; etcd: put-if-absent txn)", kext_create, etcd_create),
        Scenario("get", f"get one of {pool_size} objects (etcd: linearizable range)",
                 kext_get, etcd_get),
        Scenario("update", "update (merge PATCH, a guaranteed update; "
                 "etcd: range + txn on mod_revision)", kext_update, etcd_update),
        Scenario("delete", "delete what create created (etcd: delete range)",
                 kext_delete, etcd_delete, timed=False, warmup=False),
    ]
    for size in (small, large):
        for rv, rv_name in (("0", "rv0"), ("", "rv-empty")):
            etcd_read = "serializable" if rv == "0" else "linearizable"
            scenarios.append(Scenario(
                f"list-{size}-{rv_name}",
                f'list {size} objects, resourceVersion="{rv}" (etcd: {etcd_read} prefix range)',
                kext_list(list_namespace(size), rv), etcd_list(list_namespace(size), rv),
            ))
    scenarios.append(Scenario(
        f"list-{large}-limit{PAGE}",
        f"list {large} objects in pages of {PAGE} (limit + continue; etcd: ranges of {PAGE} "
        "at the first page's revision); one op = the whole list",
        kext_pages(list_namespace(large), PAGE), etcd_pages(list_namespace(large), PAGE),
    ))
    return scenarios


def list_namespace(size: int) -> str:
    return f"list-{size}"
