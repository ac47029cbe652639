"""Cost of a rule, estimated the way cel-go's checker estimates it, from the checked tree and
the sizes of the values it reads.

The engine does not count the steps it takes, so kext estimates instead: at CRD load with the
sizes the schema allows (maxLength, maxItems, maxProperties, or what fits in a 3 MiB request
when unbounded), and per request with the sizes of the values actually sent. A call costs 1,
an identifier or field selection 1, a list literal 10, a string function a tenth of the
string's length, a list function the list's length, a comprehension its range's size times its
body, an authorization check 350,000 (kube's figure, which allows two per expression). The
figures are upper bounds of what cel-go would count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from kext.cel.ast import Expr

Path = tuple[str, ...]
Sizer = Callable[[Path], int]

# k8s.io/apiserver/pkg/apis/cel/config.go
PER_CALL_LIMIT = 1_000_000
RUNTIME_COST_BUDGET = 10_000_000
# apiextensions validation: the largest estimated cost of one rule, and of all rules.
STATIC_ESTIMATED_COST_LIMIT = 10_000_000
STATIC_ESTIMATED_CRD_COST_LIMIT = 100_000_000
MAX_REQUEST_SIZE_BYTES = 3 * 1024 * 1024
# One authorizer check (kube's library/cost.go: so that an expression may make two).
AUTHORIZATION_CHECK_COST = 350_000

_STRING_LINEAR = frozenset({
    "contains", "startsWith", "endsWith", "lowerAscii", "upperAscii", "trim", "replace",
    "split", "substring", "charAt", "indexOf", "lastIndexOf", "format", "quote", "reverse",
    "url", "isURL", "quantity", "isQuantity", "ip", "isIP", "cidr", "isCIDR", "semver",
    "isSemver", "validate", "string", "bytes", "int", "double", "timestamp", "duration",
})
_REGEX = frozenset({"matches", "find", "findAll"})
_LIST_LINEAR = frozenset({
    "isSorted", "sum", "min", "max", "indexOf", "lastIndexOf", "join", "@in",
    "sets.contains", "sets.intersects", "sets.equivalent", "includes",
})
_SAME_SIZE = frozenset({"lowerAscii", "upperAscii", "trim", "replace", "substring", "split",
                        "reverse", "format", "string", "findAll"})


def estimate(root: Expr, sizer: Sizer, variables: dict[str, Path]) -> int:
    """The cost of evaluating `root` once; `variables` maps the names a rule may read to the
    path `sizer` knows them by."""
    cost, _, _ = _cost(root, sizer, dict(variables))
    return cost


def _cost(e: Expr, sizer: Sizer, env: dict[str, Path]) -> tuple[int, int, Path | None]:
    """(cost, size of the value, its path when it is a variable's part)."""
    if e.kind == "const":
        return 0, e.size, None
    if e.kind == "ident":
        path = env.get(e.name)
        return 1, sizer(path) if path is not None else 0, path
    if e.kind == "select":
        cost, _, path = _cost(e.args[0], sizer, env) if e.args else (0, 0, None)
        if path is None:
            return cost + 1, 0, None
        sub = (*path, e.name)
        return cost + 1, 0 if e.test_only else sizer(sub), None if e.test_only else sub
    if e.kind == "list":
        parts = [_cost(a, sizer, env) for a in e.args]
        return 10 + sum(p[0] for p in parts), len(parts), None
    if e.kind == "map":
        return 30 + sum(_cost(a, sizer, env)[0] for a in e.args), len(e.args) // 2, None
    if e.kind == "struct":
        return 40 + sum(_cost(a, sizer, env)[0] for a in e.args), len(e.args), None
    if e.kind == "comprehension":
        return _comprehension(e, sizer, env)
    return _call(e, sizer, env)


def _call(e: Expr, sizer: Sizer, env: dict[str, Path]) -> tuple[int, int, Path | None]:
    parts = [_cost(a, sizer, env) for a in e.args]
    cost = sum(p[0] for p in parts)
    sizes = [p[1] for p in parts]
    name = e.name
    first = sizes[0] if sizes else 0
    if name == "_[_]" and parts and parts[0][2] is not None:
        sub = parts[0][2] + ("*",)
        return cost + 1, sizer(sub), sub
    if name in ("value", "orValue", "optional.of") and parts:
        return cost + 1, first, parts[0][2]
    if name in ("_==_", "_!=_"):
        return cost + 1 + _tenth(min(sizes) if sizes else 0), 0, None
    if name == "_+_":
        return cost + 1 + _tenth(sum(sizes)), sum(sizes), None
    if name in _REGEX:
        pattern = sizes[1] if len(sizes) > 1 else 1
        call = 1 + _tenth(first) * max(1, math.ceil(0.25 * pattern))
        return cost + call, first if name in _SAME_SIZE else 0, None
    if name in _LIST_LINEAR and (not e.target or name != "indexOf" or first > 0):
        if name == "@in":
            first = sizes[1] if len(sizes) > 1 else 0
        return cost + 1 + first, 0, None
    if name == "check" and e.target:
        return cost + AUTHORIZATION_CHECK_COST, 0, None
    if name in ("fieldSelector", "labelSelector") and len(sizes) > 1:
        return cost + _selector_cost(sizes[1]), 0, None
    if name in _STRING_LINEAR:
        return cost + 1 + _tenth(first), first if name in _SAME_SIZE else 0, None
    return cost + 1, 0, None


def _comprehension(e: Expr, sizer: Sizer, env: dict[str, Path]) -> tuple[int, int, Path | None]:
    assert e.iter_range is not None
    range_cost, range_size, range_path = _cost(e.iter_range, sizer, env)
    inner = dict(env)
    if range_path is not None:
        inner[e.name] = (*range_path, "*")
    else:
        inner.pop(e.name, None)
    inner.pop(e.accu_var, None)
    body = 0
    for part in (e.loop_condition, e.loop_step):
        if part is not None:
            body += _cost(part, sizer, inner)[0]
    init = _cost(e.accu_init, sizer, env)[0] if e.accu_init is not None else 0
    result = _cost(e.result, sizer, inner)[0] if e.result is not None else 0
    return range_cost + init + result + range_size * body, range_size, None


def _tenth(size: int) -> int:
    return math.ceil(0.1 * size)


def _selector_cost(length: int) -> int:
    """Parsing a field or label selector of `length` characters into requirements, as kube
    counts it: a list, a traversal of the string, and a struct and a list for each
    requirement, taken to be at most one in two characters."""
    return 10 + _tenth(length) + math.ceil(0.5 * length) * (10 + 40)


# -- sizes


def schema_sizer(schema: dict[str, Any]) -> Sizer:
    """The largest size each path under `schema` may have, as the schema bounds it."""
    def size(path: Path) -> int:
        node = _walk_schema(schema, path[1:])
        return max_size(node) if node is not None else 0
    return size


def _walk_schema(schema: Any, path: Path) -> dict[str, Any] | None:
    node = schema
    for key in path:
        if not isinstance(node, dict):
            return None
        if key == "*":
            node = node.get("items") if node.get("type") == "array" else \
                node.get("additionalProperties")
        elif key == "#key":
            return {"type": "string"}
        else:
            props = node.get("properties") or {}
            node = props.get(key) if key in props else _unescaped(props, key)
    return node if isinstance(node, dict) else None


def _unescaped(props: dict[str, Any], key: str) -> Any:
    from kext.cel.schematypes import escape
    for name, sub in props.items():
        if escape(name) == key:
            return sub
    return None


def max_size(node: dict[str, Any]) -> int:
    t = node.get("type")
    if t == "string":
        bound = node.get("maxLength")
        return bound if isinstance(bound, int) else MAX_REQUEST_SIZE_BYTES - 2
    if t == "array":
        bound = node.get("maxItems")
        if isinstance(bound, int):
            return bound
        items = node.get("items")
        return (MAX_REQUEST_SIZE_BYTES - 2) // (min_serialized_size(items) + 1)
    if t == "object" or node.get("additionalProperties") is not None:
        bound = node.get("maxProperties")
        if isinstance(bound, int):
            return bound
        value = node.get("additionalProperties")
        return (MAX_REQUEST_SIZE_BYTES - 2) // (min_serialized_size(value) + 4)
    return 1


def min_serialized_size(node: Any) -> int:
    """The fewest bytes one value of `node` takes in JSON (as kube's estimator counts)."""
    if not isinstance(node, dict):
        return 1
    t = node.get("type")
    if t == "string":
        return 2 + (node.get("minLength") or 0)
    if t == "boolean":
        return 4
    if t in ("object", "array"):
        return 2
    return 1


def cardinality(ancestors: list[dict[str, Any]]) -> int:
    """How many times a rule may run in one object: the product of the sizes of the lists and
    maps above it."""
    times = 1
    for node in ancestors:
        times *= max(1, max_size(node))
    return times


def value_sizer(value: Any) -> Sizer:
    """The largest size each path has in an actual value."""
    def size(path: Path) -> int:
        found = [value]
        for key in path[1:]:
            step: list[Any] = []
            for v in found:
                if key == "*":
                    if isinstance(v, list):
                        step.extend(v)
                    elif isinstance(v, dict):
                        step.extend(v.values())
                elif key == "#key":
                    if isinstance(v, dict):
                        step.extend(v.keys())
                elif isinstance(v, dict) and key in v:
                    step.append(v[key])
            found = step
        return max((len(v) for v in found if isinstance(v, (str, bytes, list, dict))),
                   default=0)
    return size
