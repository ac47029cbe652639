"""The Kubernetes list library (isSorted, sum, min, max, indexOf, lastIndexOf) and cel-go's
sets extension (sets.contains, sets.equivalent, sets.intersects)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from kext.cel.library import Function, Overload, member

_COMPARABLE = ("int", "uint", "double", "bool", "string", "bytes", "duration", "timestamp")
_SUMMABLE = {"int": 0, "uint": 0, "double": 0.0, "duration": timedelta(0)}


def _cel(value: Any) -> Any:
    # The engine hands durations and timestamps to Python as datetime objects and takes them
    # back as protobuf messages.
    if isinstance(value, timedelta):
        d = duration_pb2.Duration()
        d.FromTimedelta(value)
        return d
    if isinstance(value, datetime):
        t = timestamp_pb2.Timestamp()
        t.FromDatetime(value)
        return t
    return value


def is_sorted(values: list[Any]) -> bool:
    return all(values[i] <= values[i + 1] for i in range(len(values) - 1))


def _sum(zero: Any) -> Any:
    def run(values: list[Any]) -> Any:
        total = zero
        for v in values:
            total = total + v
        return _cel(total)
    return run


def _extreme(pick: Any) -> Any:
    def run(values: list[Any]) -> Any:
        if not values:
            raise ValueError(f"{pick.__name__}(list) argument must not be empty")
        return _cel(pick(values))
    return run


def index_of(values: list[Any], item: Any) -> int:
    for i, v in enumerate(values):
        if _equal(v, item):
            return i
    return -1


def last_index_of(values: list[Any], item: Any) -> int:
    for i in range(len(values) - 1, -1, -1):
        if _equal(values[i], item):
            return i
    return -1


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def sets_contains(values: list[Any], sub: list[Any]) -> bool:
    return all(any(_equal(v, s) for v in values) for s in sub)


def sets_intersects(values: list[Any], other: list[Any]) -> bool:
    return any(any(_equal(v, o) for v in values) for o in other)


def sets_equivalent(values: list[Any], other: list[Any]) -> bool:
    return sets_contains(values, other) and sets_contains(other, values)


FUNCTIONS: tuple[Function, ...] = (
    member("isSorted", "list_is_sorted", ("list(dyn)",), "bool", is_sorted),
    Function("sum", tuple(Overload(f"list_{t}_sum", (f"list({t})",), t, _sum(zero), member=True)
                          for t, zero in _SUMMABLE.items())),
    Function("min", tuple(Overload(f"list_{t}_min", (f"list({t})",), t, _extreme(min),
                                   member=True) for t in _COMPARABLE)),
    Function("max", tuple(Overload(f"list_{t}_max", (f"list({t})",), t, _extreme(max),
                                   member=True) for t in _COMPARABLE)),
    member("indexOf", "list_index_of", ("list(dyn)", "dyn"), "int", index_of),
    member("lastIndexOf", "list_last_index_of", ("list(dyn)", "dyn"), "int", last_index_of),
    Function("sets.contains", (Overload("list_sets_contains_list", ("list(dyn)", "list(dyn)"),
                                        "bool", sets_contains),)),
    Function("sets.equivalent", (Overload("list_sets_equivalent_list",
                                          ("list(dyn)", "list(dyn)"), "bool", sets_equivalent),)),
    Function("sets.intersects", (Overload("list_sets_intersects_list",
                                          ("list(dyn)", "list(dyn)"), "bool", sets_intersects),)),
)
