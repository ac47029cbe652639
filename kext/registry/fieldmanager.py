"""Server-side apply and `metadata.managedFields`, as kube-apiserver does them for custom
resources (k8s.io/apimachinery/pkg/util/managedfields and sigs.k8s.io/structured-merge-diff).

A field set is a Python set of paths; a path is a tuple of path elements in their fieldsV1
spelling: `f:spec` (a field), `k:{"name":"a"}` (an item of a `map` list), `v:"x"` (an item of
a `set` list), `i:0` (an index, only inside values nothing can own granularly). The compiled
schema decides, as SMD's typed package does, what is a struct (named fields), a granular map
(`additionalProperties`, or the deduced keys under `x-kubernetes-preserve-unknown-fields`), an
atomic map or list (owned as a whole), or an associative list (`set` or `map`).

`FieldManager.apply` merges an applied configuration into the live object, prunes what the
applier stopped applying, and raises kube's 409 on conflicts; `FieldManager.update` records
who changed what on any other write. Both are pure: no I/O, no clock (the caller passes `now`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from kext.api.errors import (
    Cause,
    StatusError,
    bad_request,
    field_forbidden,
    field_invalid,
    field_required,
    field_too_long,
    go_float,
    go_json,
    go_quote,
)
from kext.api.meta import TOTAL_ANNOTATION_SIZE_LIMIT
from kext.api.resource import ResourceDefinition, Version

Object = dict[str, Any]
Path = tuple[str, ...]

LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
FIELD_MANAGER_MAX_LENGTH = 128
# Update entries kept before the oldest are merged into one bucket per apiVersion.
MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES_MANAGER = "ancient-changes"
# The manager whose apply upgrades client-side apply and keeps its annotation in sync.
KUBECTL_MANAGER = "kubectl"

APPLY = "Apply"
UPDATE = "Update"

# Fields nobody owns (stripMetaManager): exact paths only, children stay owned.
_STRIPPED: frozenset[Path] = frozenset({
    ("f:apiVersion",), ("f:kind",), ("f:metadata",),
    ("f:metadata", "f:name"), ("f:metadata", "f:namespace"),
    ("f:metadata", "f:creationTimestamp"), ("f:metadata", "f:selfLink"),
    ("f:metadata", "f:uid"), ("f:metadata", "f:clusterName"),
    ("f:metadata", "f:generation"), ("f:metadata", "f:managedFields"),
    ("f:metadata", "f:resourceVersion"),
})
# Never removed whole by apply's pruning (kube never gets there: appliers always send a name).
_NEVER_PRUNED: frozenset[Path] = frozenset({("f:apiVersion",), ("f:kind",), ("f:metadata",)})

_ABSENT: Any = object()


# -- path elements and fieldsV1


def _json(value: Any) -> str:
    """Compact JSON as Go's encoder writes it (sorted keys, HTML characters escaped)."""
    text = go_json(value)
    if any(c in text for c in "<>&\u2028\u2029"):
        text = (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
                .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return text


@lru_cache(maxsize=8192)
def _parse_element(key: str) -> str | None:
    """A fieldsV1 key in canonical form; None for element types this version does not know
    (skipped, as SMD skips them); ValueError when it cannot be read."""
    if len(key) < 2:
        raise ValueError(f"key must be 2 characters long: {key!r}")
    if key[1] != ":":
        return None
    kind, body = key[0], key[2:]
    if kind == "f":
        return key
    if kind == "i":
        try:
            return f"i:{int(body)}"
        except ValueError:
            raise ValueError(f"invalid index in path element {key!r}") from None
    if kind in "kv":
        try:
            value = json.loads(body)
        except ValueError as exc:
            raise ValueError(f"invalid path element {key!r}: {exc}") from None
        if kind == "k":
            if not isinstance(value, dict):
                raise ValueError(f"invalid key path element {key!r}: not an object")
            return "k:" + _json(value)
        return "v:" + _json(value)
    return None


@lru_cache(maxsize=8192)
def _element_value(element: str) -> Any:
    return json.loads(element[2:])


def _value_order(value: Any) -> tuple[Any, ...]:
    # SMD's total order of values: numbers, strings, booleans, lists, maps, null.
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, (int, float)):
        return (0, float(value))
    if isinstance(value, str):
        return (1, value)
    if isinstance(value, list):
        return (3, tuple(_value_order(v) for v in value))
    if isinstance(value, dict):
        return (4, tuple((k, _value_order(v)) for k, v in sorted(value.items())))
    return (5,)


@lru_cache(maxsize=8192)
def _element_order(element: str) -> tuple[Any, ...]:
    # SMD orders path elements: fields, then keys, then values, then indexes.
    kind, body = element[0], element[2:]
    if kind == "f":
        return (0, body)
    if kind == "k":
        return (1, tuple((k, _value_order(v)) for k, v in sorted(_element_value(element).items())))
    if kind == "v":
        return (2, _value_order(_element_value(element)))
    return (3, int(body))


def _value_string(value: Any) -> str:
    # value.ToString: how a key or set value appears in a path's text.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, list):
        return "[" + ",".join(_value_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "".join(f"{k}={_value_string(v)}" for k, v in sorted(value.items()))
    return str(value)


def _element_string(element: str) -> str:
    kind = element[0]
    if kind == "f":
        return "." + element[2:]
    if kind == "k":
        keys = _element_value(element)
        return "[" + ",".join(f"{k}={_value_string(v)}" for k, v in sorted(keys.items())) + "]"
    if kind == "v":
        return f"[={_value_string(_element_value(element))}]"
    return f"[{element[2:]}]"


def path_string(path: Path) -> str:
    """A path as kube prints it in conflicts: `.spec.ports[name="http"].port`."""
    return "".join(_element_string(e) for e in path)


def fields_to_set(fields: object) -> set[Path]:
    """Read a `fieldsV1` value into a set of paths; ValueError if it is malformed."""
    out: set[Path] = set()
    if fields is None:
        return out
    if not isinstance(fields, dict):
        raise ValueError("fieldsV1 must be an object")
    _read_fields(fields, (), out)
    return out


def _read_fields(node: dict[str, Any], prefix: Path, out: set[Path]) -> bool:
    member = False
    has_children = False
    for key, value in node.items():
        if key == ".":
            member = True
            continue
        element = _parse_element(key)
        if element is None:
            continue
        path = (*prefix, element)
        if value is None:
            child_member = True
        elif isinstance(value, dict):
            child_member = _read_fields(value, path, out)
        else:
            raise ValueError(f"fieldsV1 entry {key!r} must be an object")
        if child_member:
            out.add(path)
        has_children = True
    # A node with nothing under it is a leaf the set owns.
    return member or not has_children


def set_to_fields(paths: Iterable[Path]) -> dict[str, Any]:
    """The `fieldsV1` encoding of a set of paths, keys in SMD's order, `.` first."""
    trie: dict[str, list[Any]] = {}
    for path in paths:
        node = trie
        last = len(path) - 1
        for i, element in enumerate(path):
            entry = node.get(element)
            if entry is None:
                entry = node[element] = [False, {}]
            if i == last:
                entry[0] = True
            node = entry[1]
    return _emit_fields(trie)


def _emit_fields(trie: dict[str, list[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for element in sorted(trie, key=_element_order):
        member, children = trie[element]
        if children:
            inner: dict[str, Any] = {".": {}} if member else {}
            inner.update(_emit_fields(children))
            out[element] = inner
        else:
            out[element] = {}
    return out


def _iterate_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Paths in SMD's set order: at each level members first, then children, each sorted."""
    trie: dict[str, list[Any]] = {}
    for path in paths:
        node = trie
        for i, element in enumerate(path):
            entry = node.setdefault(element, [False, {}])
            if i == len(path) - 1:
                entry[0] = True
            node = entry[1]
    yield from _iterate_trie(trie, ())


def _iterate_trie(trie: dict[str, list[Any]], prefix: Path) -> Iterator[Path]:
    ordered = sorted(trie, key=_element_order)
    for element in ordered:
        if trie[element][0]:
            yield (*prefix, element)
    for element in ordered:
        if trie[element][1]:
            yield from _iterate_trie(trie[element][1], (*prefix, element))


def _prefixes(paths: Iterable[Path]) -> set[Path]:
    """Every proper prefix of the paths: the nodes something in the set lies below."""
    return {path[:i] for path in paths for i in range(1, len(path))}


# -- the schema as SMD sees it


_SCALAR, _MAP, _LIST, _DEDUCED, _UNTYPED = range(5)


class _Type:
    """A compiled schema node: a scalar, a map (struct fields and/or an element type), a list,
    a deduced value (preserve-unknown-fields) or an untyped atomic value."""

    __slots__ = ("atomic", "elem", "fields", "key_defaults", "keys", "kind", "list_type",
                 "scalar")

    def __init__(self, kind: int, *, scalar: str = "", fields: dict[str, _Type] | None = None,
                 elem: _Type | None = None, atomic: bool = False, list_type: str = "atomic",
                 keys: tuple[str, ...] = (), key_defaults: dict[str, Any] | None = None) -> None:
        self.kind = kind
        self.scalar = scalar
        self.fields: dict[str, _Type] = fields or {}
        self.elem = elem
        self.atomic = atomic
        self.list_type = list_type
        self.keys = keys
        self.key_defaults: dict[str, Any] = key_defaults or {}


_STRING = _Type(_SCALAR, scalar="string")
_NUMERIC = _Type(_SCALAR, scalar="numeric")
_BOOLEAN = _Type(_SCALAR, scalar="boolean")
_DEDUCED_TYPE = _Type(_DEDUCED)
_UNTYPED_TYPE = _Type(_UNTYPED)

_OWNER_REFERENCE = _Type(_MAP, fields={
    "apiVersion": _STRING, "kind": _STRING, "name": _STRING, "uid": _STRING,
    "controller": _BOOLEAN, "blockOwnerDeletion": _BOOLEAN,
})
# meta/v1 ObjectMeta, which kube's CRD OpenAPI puts under every metadata it serves.
_OBJECT_META = _Type(_MAP, fields={
    "name": _STRING, "generateName": _STRING, "namespace": _STRING, "selfLink": _STRING,
    "uid": _STRING, "resourceVersion": _STRING, "generation": _NUMERIC,
    "creationTimestamp": _STRING, "deletionTimestamp": _STRING,
    "deletionGracePeriodSeconds": _NUMERIC,
    "labels": _Type(_MAP, elem=_STRING), "annotations": _Type(_MAP, elem=_STRING),
    "ownerReferences": _Type(_LIST, elem=_OWNER_REFERENCE, list_type="map", keys=("uid",)),
    "finalizers": _Type(_LIST, elem=_STRING, list_type="set"),
    "managedFields": _Type(_LIST, elem=_UNTYPED_TYPE),
})


def _compile(s: object, *, embedded: bool = False) -> _Type:
    if not isinstance(s, dict):
        return _UNTYPED_TYPE
    if s.get("x-kubernetes-int-or-string") is True:
        return _UNTYPED_TYPE
    t = s.get("type")
    preserve = s.get("x-kubernetes-preserve-unknown-fields") is True
    embedded = embedded or s.get("x-kubernetes-embedded-resource") is True
    if t == "array":
        items = s.get("items")
        item_type = _compile(items)
        list_type = s.get("x-kubernetes-list-type")
        if list_type == "map":
            raw_keys = s.get("x-kubernetes-list-map-keys")
            keys = tuple(k for k in raw_keys if isinstance(k, str)) if isinstance(
                raw_keys, list) else ()
            props = items.get("properties") if isinstance(items, dict) else None
            defaults = {
                k: props[k]["default"] for k in keys
                if isinstance(props, dict) and isinstance(props.get(k), dict)
                and props[k].get("default") is not None
            }
            return _Type(_LIST, elem=item_type, list_type="map", keys=keys,
                         key_defaults=defaults)
        if list_type == "set":
            return _Type(_LIST, elem=item_type, list_type="set")
        return _Type(_LIST, elem=item_type)
    if t == "object" or embedded or "properties" in s or "additionalProperties" in s:
        props = s.get("properties")
        fields = {k: _compile(v) for k, v in props.items()} if isinstance(props, dict) else {}
        if embedded:
            fields.setdefault("apiVersion", _STRING)
            fields.setdefault("kind", _STRING)
            fields["metadata"] = _OBJECT_META
        additional = s.get("additionalProperties")
        elem: _Type | None = None
        if isinstance(additional, dict):
            elem = _compile(additional)
        elif additional is True or preserve:
            elem = _DEDUCED_TYPE
        return _Type(_MAP, fields=fields, elem=elem,
                     atomic=s.get("x-kubernetes-map-type") == "atomic")
    if t in ("integer", "number"):
        return _NUMERIC
    if t == "string":
        return _STRING
    if t == "boolean":
        return _BOOLEAN
    return _DEDUCED_TYPE if preserve else _UNTYPED_TYPE


def _child_type(t: _Type, key: str) -> tuple[_Type, bool]:
    """The type of a map entry and whether it is a named (struct) field."""
    if t.kind == _DEDUCED:
        return _DEDUCED_TYPE, False
    ft = t.fields.get(key)
    if ft is not None:
        return ft, True
    return (t.elem or _UNTYPED_TYPE), False


# -- list items as path elements


class _KeyError(ValueError):
    pass


def _item_element(t: _Type, item: Any) -> str:
    """The path element of an associative list item; _KeyError when it has none."""
    if t.list_type == "map":
        if item is None:
            raise _KeyError("associative list with keys may not have a null element")
        if not isinstance(item, dict):
            raise _KeyError("associative list with keys may not have non-map elements")
        keys: list[tuple[str, str, Any]] = []
        for name in t.keys:
            if name in item:
                value = item[name]
            elif name in t.key_defaults:
                value = t.key_defaults[name]
            else:
                continue
            keys.append((name, type(value).__name__, value))
        try:
            return _key_element(tuple(keys))
        except TypeError:  # an unhashable key value: rare, not worth caching
            return "k:" + _json({name: value for name, _, value in keys})
    if isinstance(item, dict):
        raise _KeyError("associative list without keys has an element that's a map type")
    if isinstance(item, list):
        raise _KeyError("not supported: associative list with lists as elements")
    if item is None:
        raise _KeyError("associative list without keys has an element that's an explicit null")
    return _value_element(type(item).__name__, item)


# Cached by (type, value) so that true and 1, equal in Python, stay different elements.
@lru_cache(maxsize=8192)
def _key_element(keys: tuple[tuple[str, str, Any], ...]) -> str:
    return "k:" + _json({name: value for name, _, value in keys})


@lru_cache(maxsize=8192)
def _value_element(kind: str, value: Any) -> str:
    return "v:" + _json(value)


def _index_items(t: _Type, items: list[Any]) -> tuple[list[str], dict[str, Any], set[str]]:
    """Item elements in list order (first occurrence), element -> item, duplicated elements."""
    order: list[str] = []
    by_element: dict[str, Any] = {}
    duplicates: set[str] = set()
    for item in items:
        element = _item_element(t, item)
        if element in by_element:
            duplicates.add(element)
            continue
        by_element[element] = item
        order.append(element)
    return order, by_element, duplicates


# -- walks over values


def _equal(a: Any, b: Any) -> bool:
    """JSON equality as SMD sees it: 1 == 1.0, but true is not 1."""
    if a is b:
        return True
    ta, tb = type(a), type(b)
    if ta is dict:
        if tb is not dict or len(a) != len(b):
            return False
        for k, v in a.items():
            w = b.get(k, _ABSENT)
            if w is _ABSENT or not _equal(v, w):
                return False
        return True
    if ta is list:
        if tb is not list or len(a) != len(b):
            return False
        return all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if tb is dict or tb is list or (ta is bool) != (tb is bool):
        return False
    return bool(a == b)


class _Diff:
    """typed.Comparison: paths added, modified and removed between two values, with every
    map, list and item that appears or disappears as a whole counted too."""

    __slots__ = ("added", "modified", "removed")

    def __init__(self) -> None:
        self.added: set[Path] = set()
        self.modified: set[Path] = set()
        self.removed: set[Path] = set()

    def changed(self) -> bool:
        return bool(self.added or self.modified or self.removed)

    def walk(self, lhs: Any, rhs: Any, t: _Type, path: Path) -> None:
        if t.kind == _MAP or (t.kind == _DEDUCED and (type(lhs) is dict or type(rhs) is dict)):
            if self._map(lhs, rhs, t, path):
                return
        elif t.kind == _LIST and self._list(lhs, rhs, t, path):
            return
        self._leaf(lhs, rhs, path)

    def _leaf(self, lhs: Any, rhs: Any, path: Path) -> None:
        if lhs is _ABSENT:
            self.added.add(path)
        elif rhs is _ABSENT:
            self.removed.add(path)
        elif not _equal(lhs, rhs):
            self.modified.add(path)

    def _appeared(self, lhs: Any, rhs: Any, path: Path) -> None:
        if lhs is _ABSENT:
            self.added.add(path)
        elif rhs is _ABSENT:
            self.removed.add(path)

    def _map(self, lhs: Any, rhs: Any, t: _Type, path: Path) -> bool:
        lm = lhs if type(lhs) is dict else None
        rm = rhs if type(rhs) is dict else None
        if (lm is None and lhs is not _ABSENT and lhs is not None) or (
                rm is None and rhs is not _ABSENT and rhs is not None):
            return False
        if (t.kind == _MAP and t.atomic) or (not lm and not rm):
            return False
        if lm:
            for key, lv in lm.items():
                rv = rm.get(key, _ABSENT) if rm else _ABSENT
                if lv is rv:
                    continue
                self.walk(lv, rv, _child_type(t, key)[0], (*path, "f:" + key))
        if rm:
            for key, rv in rm.items():
                if lm is None or key not in lm:
                    self.walk(_ABSENT, rv, _child_type(t, key)[0], (*path, "f:" + key))
        if path:
            self._appeared(lhs, rhs, path)
        return True

    def _list(self, lhs: Any, rhs: Any, t: _Type, path: Path) -> bool:
        ll = lhs if type(lhs) is list else None
        rl = rhs if type(rhs) is list else None
        if (ll is None and lhs is not _ABSENT and lhs is not None) or (
                rl is None and rhs is not _ABSENT and rhs is not None):
            return False
        if t.list_type == "atomic" or (not ll and not rl):
            return False
        elem = t.elem or _UNTYPED_TYPE
        try:
            l_order, l_items, l_dups = _index_items(t, ll or [])
            r_order, r_items, r_dups = _index_items(t, rl or [])
        except _KeyError:
            return False
        dups = l_dups | r_dups
        for element in l_order:
            rv = r_items.get(element, _ABSENT)
            if element in dups:
                self._leaf(l_items[element], rv, (*path, element))
            else:
                self.walk(l_items[element], rv, elem, (*path, element))
        for element in r_order:
            if element not in l_items:
                self.walk(_ABSENT, r_items[element], elem, (*path, element))
        self._appeared(lhs, rhs, path)
        return True


def _diff(lhs: Any, rhs: Any, t: _Type) -> _Diff:
    d = _Diff()
    d.walk(lhs, rhs, t, ())
    return d


def _merge(lhs: Any, rhs: Any, t: _Type) -> Any:
    """typed.Merge with the applied value winning at every leaf; unchanged subtrees are shared
    with the inputs, containers on merged paths are new."""
    if rhs is _ABSENT:
        return lhs
    if lhs is _ABSENT:
        return rhs
    if t.kind == _MAP or (t.kind == _DEDUCED and type(lhs) is dict and type(rhs) is dict):
        lm = lhs if type(lhs) is dict else None
        rm = rhs if type(rhs) is dict else None
        if (lm is None and lhs is not None) or (rm is None and rhs is not None):
            return rhs
        if (t.kind == _MAP and t.atomic) or (not lm and not rm):
            return rhs
        out: dict[str, Any] = {}
        if lm:
            for key, lv in lm.items():
                rv = rm.get(key, _ABSENT) if rm else _ABSENT
                out[key] = lv if rv is _ABSENT else _merge(lv, rv, _child_type(t, key)[0])
        if rm:
            for key, rv in rm.items():
                if lm is None or key not in lm:
                    out[key] = rv
        return out
    if t.kind == _LIST:
        ll = lhs if type(lhs) is list else None
        rl = rhs if type(rhs) is list else None
        if (ll is None and lhs is not None) or (rl is None and rhs is not None):
            return rhs
        if t.list_type == "atomic" or (not ll and not rl):
            return rhs
        try:
            return _merge_items(ll or [], rl or [], t)
        except _KeyError:
            return rhs
    return rhs


def _merge_items(lhs: list[Any], rhs: list[Any], t: _Type) -> list[Any]:
    # SMD's order: live-only items keep their place, items both sides share follow the
    # applied order, applied-only items come where the applied list puts them.
    elem = t.elem or _UNTYPED_TYPE
    l_order, l_items, _ = _index_items(t, lhs)
    r_order, r_items, _ = _index_items(t, rhs)
    shared = [e for e in r_order if e in l_items]
    next_shared = 0
    merged_rhs: set[str] = set()
    out: list[Any] = []
    li = ri = 0
    while li < len(l_order) or ri < len(r_order):
        if li < len(l_order) and ri < len(r_order):
            element = l_order[li]
            if element == r_order[ri]:
                merged_rhs.add(element)
                out.append(_merge(l_items[element], r_items[element], elem))
                li += 1
                ri += 1
                next_shared += 1
                continue
            want = shared[next_shared] if next_shared < len(shared) else None
            if element in r_items and want is not None and want != element:
                li += 1
                continue
        if li < len(l_order):
            element = l_order[li]
            if element not in r_items:
                out.append(l_items[element])
                li += 1
                continue
            if element in merged_rhs:
                li += 1
                continue
        if ri < len(r_order):
            element = r_order[ri]
            merged_rhs.add(element)
            out.append(_merge(l_items.get(element, _ABSENT), r_items[element], elem))
            ri += 1
            if next_shared < len(shared) and shared[next_shared] == element:
                next_shared += 1
    return out


def _to_set(value: Any, t: _Type, path: Path, out: set[Path]) -> None:
    """typed.ToFieldSet: the leaves of a value, its non-field map keys and its list items."""
    kind = t.kind
    if kind in (_SCALAR, _UNTYPED):
        out.add(path)
        return
    if kind == _DEDUCED:
        if type(value) is not dict:
            out.add(path)
            return
        for key, v in value.items():
            child = (*path, "f:" + key)
            _to_set(v, _DEDUCED_TYPE, child, out)
            out.add(child)
        return
    if kind == _MAP:
        if t.atomic:
            out.add(path)
            return
        if type(value) is not dict:
            if value is not None:
                out.add(path)
            return
        for key, v in value.items():
            child = (*path, "f:" + key)
            ct, named = _child_type(t, key)
            _to_set(v, ct, child, out)
            if not named:
                out.add(child)
        return
    if t.list_type == "atomic":
        out.add(path)
        return
    if type(value) is not list:
        if value is not None:
            out.add(path)
        return
    try:
        order, items, duplicates = _index_items(t, value)
    except _KeyError:
        out.add(path)
        return
    elem = t.elem or _UNTYPED_TYPE
    for element in order:
        child = (*path, element)
        if element not in duplicates:
            _to_set(items[element], elem, child, out)
        out.add(child)


def _prune(value: Any, t: _Type, path: Path, last: set[Path], last_below: set[Path],
           owned: set[Path], owned_below: set[Path]) -> Any:
    """Drop what the applier owned last time and nobody owns now. A struct field counts as
    owned when something under it is (EnsureNamedFieldsAreMembers); a container emptied by
    the removal becomes null, as SMD's remove walker leaves it."""
    if t.kind == _MAP or (t.kind == _DEDUCED and type(value) is dict):
        if type(value) is not dict or (t.kind == _MAP and t.atomic):
            return value
        out: dict[str, Any] = {}
        for key, v in value.items():
            child = (*path, "f:" + key)
            ct, named = _child_type(t, key)
            in_last = child in last or (named and child in last_below)
            if in_last and child not in _NEVER_PRUNED and not (
                    child in owned or (named and child in owned_below)):
                continue
            out[key] = _prune(v, ct, child, last, last_below, owned, owned_below) if (
                child in last_below) else v
        return out if out or not value else None
    if t.kind == _LIST and t.list_type != "atomic" and type(value) is list and value:
        elem = t.elem or _UNTYPED_TYPE
        kept: list[Any] = []
        for item in value:
            try:
                element = _item_element(t, item)
            except _KeyError:
                kept.append(item)
                continue
            child = (*path, element)
            if child in last and child not in owned:
                continue
            kept.append(_prune(item, elem, child, last, last_below, owned, owned_below) if (
                child in last_below) else item)
        return kept or None
    return value


# -- validation of an applied configuration (typed.AsTyped without duplicates)


def _go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    return "<nil>"


def _go_shown(value: Any) -> str:
    return f"&value.valueUnstructured{{Value:{go_json(value)}}}"


def _validate(value: Any, t: _Type, path: str, errs: list[tuple[str, str]]) -> None:
    kind = t.kind
    if value is None or kind == _UNTYPED:
        return
    if kind == _SCALAR:
        scalar = t.scalar
        if scalar == "numeric" and (isinstance(value, bool) or not isinstance(
                value, (int, float))):
            errs.append((path, f"expected numeric (int or float), got {_go_type(value)}"))
        elif scalar == "string" and not isinstance(value, str):
            errs.append((path, f"expected string, got {_go_shown(value)}"))
        elif scalar == "boolean" and not isinstance(value, bool):
            errs.append((path, f"expected boolean, got {_go_shown(value)}"))
        return
    if kind == _DEDUCED:
        if isinstance(value, dict):
            for key in sorted(value):
                _validate(value[key], _DEDUCED_TYPE, f"{path}.{key}", errs)
        return
    if kind == _MAP:
        if not isinstance(value, dict):
            errs.append((path, f"expected map, got {_go_shown(value)}"))
            return
        for key in sorted(value):
            ct = t.fields.get(key) or t.elem
            if ct is None:
                # SMD stops at the first undeclared field of a map.
                errs.append((f"{path}.{key}", "field not declared in schema"))
                return
            _validate(value[key], ct, f"{path}.{key}", errs)
        return
    if not isinstance(value, list):
        errs.append((path, f"expected list, got {_go_shown(value)}"))
        return
    elem = t.elem or _UNTYPED_TYPE
    seen: set[str] = set()
    for i, item in enumerate(value):
        if t.list_type == "atomic":
            _validate(item, elem, f"{path}[{i}]", errs)
            continue
        try:
            element = _item_element(t, item)
        except _KeyError as exc:
            errs.append((path, f"element {i}: {exc}"))
            return
        shown = _element_string(element)
        if element in seen:
            errs.append((path, f"duplicate entries for key {shown}"))
        seen.add(element)
        _validate(item, elem, path + shown, errs)


def _validation_message(errs: list[tuple[str, str]]) -> str:
    lines = [f"{p}: {m}" if p else m for p, m in errs]
    if len(lines) == 1:
        return lines[0]
    return "\n".join(["errors:", *("  " + line for line in lines)])


# -- managedFields entries


Identity = tuple[str, str, str, str]  # manager, operation, apiVersion (Update only), subresource


@dataclass
class _Entry:
    """One decoded `metadata.managedFields` entry."""

    manager: str
    operation: str
    api_version: str
    fields: set[Path] = field(default_factory=set)
    time: str | None = None
    subresource: str = ""

    @property
    def identity(self) -> Identity:
        # Appliers are one manager whatever version they apply (BuildManagerIdentifier).
        version = self.api_version if self.operation == UPDATE else ""
        return (self.manager, self.operation, version, self.subresource)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"manager": self.manager, "operation": self.operation,
                               "apiVersion": self.api_version}
        if self.time is not None:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = set_to_fields(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def _identity_json(identity: Identity) -> str:
    manager, operation, version, subresource = identity
    parts = [f'"manager":{_json(manager)}', f'"operation":{_json(operation)}']
    if version:
        parts.append(f'"apiVersion":{_json(version)}')
    if subresource:
        parts.append(f'"subresource":{_json(subresource)}')
    return "{" + ",".join(parts) + "}"


def _print_manager(identity: Identity) -> str:
    manager, operation, version, subresource = identity
    text = go_quote(manager)
    if subresource:
        text += f" with subresource {go_quote(subresource)}"
    if operation == UPDATE:
        text += f" using {version}"
    return text


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _normalize_time(value: str) -> str:
    if not _RFC3339.match(value):
        raise ValueError(f"invalid time {value!r}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unix(time: str | None) -> float:
    if not time:
        return 0
    try:
        return datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0


_ENTRY_STRINGS = ("manager", "operation", "apiVersion", "fieldsType", "subresource")


def _raw_entries(metadata: object) -> list[dict[str, Any]] | None:
    """managedFields as Unstructured.GetManagedFields reads it: None when absent or when any
    entry fails to convert; otherwise the entries with times normalized."""
    if not isinstance(metadata, dict):
        return None
    entries = metadata.get("managedFields")
    if not isinstance(entries, list):
        return None
    out: list[dict[str, Any]] = []
    for entry in entries:
        if not isinstance(entry, dict):
            return None
        converted: dict[str, Any] = {}
        for key in _ENTRY_STRINGS:
            value = entry.get(key)
            if value is not None and not isinstance(value, str):
                return None
            converted[key] = value or ""
        time = entry.get("time")
        if time is not None:
            if not isinstance(time, str):
                return None
            try:
                time = _normalize_time(time)
            except ValueError:
                return None
        converted["time"] = time
        converted["fieldsV1"] = entry.get("fieldsV1")
        out.append(converted)
    return out


def _is_reset(entries: list[dict[str, Any]] | None) -> bool:
    # `managedFields: []` or `[{}]` asks for them to be cleared.
    if entries is None:
        return False
    if not entries:
        return True
    entry = entries[0]
    return len(entries) == 1 and entry["time"] is None and entry["fieldsV1"] is None and all(
        entry[key] == "" for key in _ENTRY_STRINGS)


def _decode_entries(entries: list[dict[str, Any]]) -> dict[Identity, _Entry]:
    # Entries as _raw_entries returns them, by manager identity; ValueError in kube's words.
    out: dict[Identity, _Entry] = {}
    for i, entry in enumerate(entries):
        operation = entry["operation"]
        if operation not in (APPLY, UPDATE):
            raise ValueError("operation must be `Apply` or `Update`")
        if not entry["apiVersion"]:
            raise ValueError("apiVersion must not be empty")
        if entry["fieldsType"] == "":
            raise ValueError(f"missing fieldsType in managed fields entry {i}")
        if entry["fieldsType"] != "FieldsV1":
            raise ValueError(
                f"invalid fieldsType {go_quote(entry['fieldsType'])} in managed fields entry {i}")
        decoded = _Entry(
            manager=entry["manager"], operation=operation, api_version=entry["apiVersion"],
            fields=fields_to_set(entry["fieldsV1"]), time=entry["time"],
            subresource=entry["subresource"],
        )
        out[decoded.identity] = decoded
    return out


def _encode_entries(entries: Iterable[_Entry]) -> list[dict[str, Any]]:
    """Entries as managedFields, in kube's order: Apply before Update, then oldest first,
    then by manager, apiVersion and subresource."""
    ordered = sorted(entries, key=lambda e: (
        e.operation, _unix(e.time), e.manager, e.api_version, e.subresource))
    return [e.to_dict() for e in ordered]


def _decode_object(obj: Object | None) -> dict[Identity, _Entry]:
    entries = _raw_entries(obj.get("metadata")) if obj else None
    return _decode_entries(entries) if entries else {}


def _cap_update_managers(managed: dict[Identity, _Entry], limit: int) -> None:
    """capManagersManager: merge the oldest Update entries, per apiVersion, into one
    `ancient-changes` entry until at most `limit` remain."""
    updaters = [e for e in managed.values() if e.operation == UPDATE]
    if len(updaters) <= limit:
        return
    updaters.sort(key=lambda e: (e.time is not None, _unix(e.time)))
    first_by_version: dict[str, Identity] = {}
    length = len(updaters)
    for entry in updaters:
        if length <= limit:
            break
        bucket: Identity = (ANCIENT_CHANGES_MANAGER, UPDATE, entry.api_version, "")
        if entry.identity == bucket:
            first_by_version.setdefault(entry.api_version, bucket)
            continue
        first = first_by_version.get(entry.api_version)
        if first is None:
            first_by_version[entry.api_version] = entry.identity
            continue
        if bucket not in managed:
            moved = managed.pop(first)
            managed[bucket] = _Entry(ANCIENT_CHANGES_MANAGER, UPDATE, entry.api_version,
                                           moved.fields, moved.time)
        target = managed[bucket]
        target.fields = target.fields | entry.fields
        target.time = entry.time
        del managed[entry.identity]
        length -= 1


# -- errors


def _conflict_error(conflicts: dict[Identity, set[Path]]) -> StatusError:
    ordered = sorted(conflicts, key=_identity_json)
    pairs = [(identity, path) for identity in ordered for path in _iterate_paths(
        conflicts[identity])]
    causes = [Cause("FieldManagerConflict", f"conflict with {_print_manager(identity)}",
                    path_string(path)) for identity, path in pairs]
    if len(pairs) == 1:
        identity, path = pairs[0]
        message = (f"Apply failed with 1 conflict: conflict with {_print_manager(identity)}: "
                   f"{path_string(path)}")
    else:
        lines: list[str] = []
        for identity in ordered:
            lines.append(f"conflicts with {_print_manager(identity)}:")
            lines.extend(f"- {path_string(p)}" for p in _iterate_paths(conflicts[identity]))
        message = f"Apply failed with {len(pairs)} conflicts: " + "\n".join(lines)
    return StatusError(409, "Conflict", message, causes=causes)


def _gvk_string(obj: Object) -> str:
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    api_version = api_version if isinstance(api_version, str) else ""
    kind = kind if isinstance(kind, str) else ""
    group, version = "", api_version
    if api_version.count("/") == 1:
        group, version = api_version.split("/")
    elif "/" in api_version:
        version = ""
    return f"{group}/{version}, Kind={kind}"


def _name_string(obj: Object) -> str:
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    namespace = metadata.get("namespace")
    name = metadata.get("name")
    return (f"{namespace if isinstance(namespace, str) else ''}/"
            f"{name if isinstance(name, str) else ''}")


def _go_json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number"


# -- the field manager


def _without_managed_fields(obj: Object) -> Object:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or "managedFields" not in metadata:
        return obj
    out = dict(obj)
    out["metadata"] = {k: v for k, v in metadata.items() if k != "managedFields"}
    return out


def _own_metadata(obj: Object) -> tuple[Object, dict[str, Any]]:
    """A shallow copy of obj with a metadata dict of its own, safe to change."""
    out = dict(obj)
    metadata = out.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    out["metadata"] = metadata
    return out, metadata


def _set_managed(metadata: dict[str, Any], managed: dict[Identity, _Entry]) -> None:
    if managed:
        metadata["managedFields"] = _encode_entries(managed.values())
    else:
        metadata.pop("managedFields", None)


class FieldManager:
    """Server-side apply and managedFields for one served version of a resource, built once
    from that version's openAPIV3Schema (kube's NewDefaultCRDFieldManager)."""

    def __init__(self, api_version: str, kind: str, schema: object, *,
                 status_subresource: bool = False,
                 max_update_managers: int = MAX_UPDATE_MANAGERS) -> None:
        self.api_version = api_version
        self.kind = kind
        self.status_subresource = status_subresource
        self.max_update_managers = max_update_managers
        self._root = _compile(schema, embedded=True)

    @classmethod
    def for_version(cls, definition: ResourceDefinition, version: Version) -> FieldManager:
        """The field manager of one served version of a declared resource."""
        return cls(f"{definition.group}/{version.name}", definition.kind, version.schema,
                   status_subresource=version.status_subresource)

    # Fields a write through this endpoint cannot set, so never owns (GetResetFields).
    def _reset(self, subresource: str) -> frozenset[str]:
        if subresource == "status":
            return frozenset({"f:spec"})
        if self.status_subresource:
            return frozenset({"f:status"})
        return frozenset()

    @staticmethod
    def _filter(paths: set[Path], reset: frozenset[str]) -> set[Path]:
        if not reset:
            return paths
        return {p for p in paths if p[0] not in reset}

    def _empty(self) -> Object:
        return {"apiVersion": self.api_version, "kind": self.kind}

    # -- apply

    def apply(self, live: Object | None, applied: object, manager: str, force: bool, now: str,
              subresource: str = "") -> Object:
        """The object after applying `applied`, the manager's whole intent, to `live` (None
        to create), with managedFields updated. Raises StatusError: 400 when `applied` is not
        this version's kind or carries managedFields, 500 (kube's `failed to create typed
        patch object`) when it does not fit the schema, 409 Conflict when it changes fields
        other managers own and `force` is false. Never mutates its inputs; the result may
        share unchanged subtrees with them."""
        if applied is None:
            applied = {}
        if not isinstance(applied, dict):
            raise bad_request(
                "error decoding YAML: error unmarshaling JSON: while decoding JSON: json: "
                f"cannot unmarshal {_go_json_type(applied)} into Go value of type "
                "map[string]interface {}")
        if applied.get("apiVersion") != self.api_version or applied.get("kind") != self.kind:
            raise bad_request(f"invalid object type: {_gvk_string(applied)}")
        applied_meta = applied.get("metadata")
        if isinstance(applied_meta, dict) and isinstance(applied_meta.get("managedFields"), list):
            raise bad_request("metadata.managedFields must be nil")
        try:
            managed = _decode_object(live)
        except ValueError as exc:
            raise StatusError(500, "", f"failed to decode managed fields: {exc}") from None
        errs: list[tuple[str, str]] = []
        _validate(applied, self._root, "", errs)
        if errs:
            raise StatusError(500, "", (
                f"failed to create typed patch object ({_name_string(applied)}; "
                f"{_gvk_string(applied)}): {_validation_message(errs)}"))

        live_obj = _without_managed_fields(live) if live is not None else self._empty()
        reset = self._reset(subresource)
        identity: Identity = (manager, APPLY, "", subresource)
        previous = managed.pop(identity, None)
        applied_set: set[Path] = set()
        _to_set(applied, self._root, (), applied_set)
        applied_set = self._filter(applied_set, reset)

        merged = _merge(live_obj, applied, self._root)
        if previous is not None and previous.fields:
            owned = set(applied_set)
            for entry in managed.values():
                owned |= entry.fields
            merged = _prune(merged, self._root, (), previous.fields, _prefixes(previous.fields),
                            owned, _prefixes(owned))

        diff = _diff(live_obj, merged, self._root)
        changed_paths = self._filter(diff.added | diff.modified, reset)
        removed = self._filter(diff.removed, reset)
        conflicts = {i: e.fields & changed_paths for i, e in managed.items()}
        conflicts = {i: c for i, c in conflicts.items() if c}
        if conflicts and not force:
            allowed = (self._allowed_by_last_applied(live_obj)
                       if manager == KUBECTL_MANAGER else None)
            if allowed is None:
                raise _conflict_error(conflicts)
            remaining = {i: c - allowed for i, c in conflicts.items()}
            remaining = {i: c for i, c in remaining.items() if c}
            if remaining:
                raise _conflict_error(remaining)
        for i, entry in list(managed.items()):
            entry.fields = entry.fields - conflicts.get(i, set()) - removed
            if not entry.fields:
                del managed[i]
        time = now if diff.changed() else (previous.time if previous else None)
        managed[identity] = _Entry(manager, APPLY, self.api_version,
                                         applied_set - _STRIPPED, time, subresource)

        result, metadata = _own_metadata(merged)
        if manager == KUBECTL_MANAGER:
            self._sync_last_applied(metadata, applied)
        _set_managed(metadata, managed)
        return result

    def _allowed_by_last_applied(self, live: Object) -> set[Path] | None:
        """Conflicts a first server-side apply by kubectl may take over: the fields the
        client-side apply annotation still describes as they are (lastAppliedManager)."""
        metadata = live.get("metadata")
        annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
        text = annotations.get(LAST_APPLIED_ANNOTATION) if isinstance(annotations, dict) else None
        if not isinstance(text, str) or not text:
            return None
        try:
            last = json.loads(text)
        except ValueError:
            return None
        if not isinstance(last, dict) or not last.get("kind") or (
                last.get("apiVersion") != self.api_version):
            return None
        errs: list[tuple[str, str]] = []
        _validate(last, self._root, "", errs)
        if errs:
            return None
        described: set[Path] = set()
        _to_set(last, self._root, (), described)
        diff = _diff(last, live, self._root)
        return described - diff.modified - diff.added - diff.removed

    @staticmethod
    def _sync_last_applied(metadata: dict[str, Any], applied: Object) -> None:
        """lastAppliedUpdater: kubectl's server-side apply keeps an existing client-side
        apply annotation equal to what it applied."""
        annotations = metadata.get("annotations")
        if not isinstance(annotations, dict) or not annotations.get(LAST_APPLIED_ANNOTATION):
            return
        config = dict(applied)
        config_meta = config.get("metadata")
        if isinstance(config_meta, dict):
            config_meta = dict(config_meta)
            config_annotations = config_meta.get("annotations")
            if isinstance(config_annotations, dict):
                config_meta["annotations"] = {k: v for k, v in config_annotations.items()
                                              if k != LAST_APPLIED_ANNOTATION}
            elif "annotations" in config_meta:
                del config_meta["annotations"]
            config["metadata"] = config_meta
        annotations = dict(annotations)
        annotations[LAST_APPLIED_ANNOTATION] = _json(config) + "\n"
        size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
        if size > TOTAL_ANNOTATION_SIZE_LIMIT:
            del annotations[LAST_APPLIED_ANNOTATION]
        metadata["annotations"] = annotations

    # -- update

    def update(self, live: Object | None, new: Object, manager: str, now: str,
               subresource: str = "") -> Object:
        """Record a non-apply write (create with live None, PUT, JSON or merge PATCH): the
        fields that changed from `live` to `new` go to `manager` (an Update entry), leaving
        other managers' sets. Returns `new`, changed in place. Never raises: managedFields
        `new` carries are used when valid (so clients may edit them, `[]` or `[{}]` clears
        them), else the live ones are kept; through a subresource only the live ones count."""
        metadata = new.get("metadata")
        if not isinstance(metadata, dict):
            return new
        try:
            live_managed = _decode_object(live)
        except ValueError:
            live_managed = {}
        if subresource:
            managed = live_managed
        else:
            entries = _raw_entries(metadata)
            if _is_reset(entries):
                managed = {}
            else:
                try:
                    managed = _decode_entries(entries) if entries else {}
                except ValueError:
                    managed = {}
                if not managed:
                    managed = live_managed
        metadata.pop("managedFields", None)
        if not managed and live is not None:
            live_meta = live.get("metadata")
            if isinstance(live_meta, dict) and live_meta.get("uid"):
                # Tracking restarts only with an apply once managedFields are gone.
                return new

        live_obj = _without_managed_fields(live) if live is not None else self._empty()
        reset = self._reset(subresource)
        diff = _diff(live_obj, new, self._root)
        current = self._filter(diff.added | diff.modified, reset)
        removed = self._filter(diff.removed, reset)
        for i, entry in list(managed.items()):
            entry.fields = entry.fields - current - removed
            if not entry.fields:
                del managed[i]
        if current:
            name = manager or "unknown"
            identity: Identity = (name, UPDATE, self.api_version, subresource)
            previous = managed.get(identity)
            fields = current - _STRIPPED
            if previous is not None:
                fields |= previous.fields
            managed[identity] = _Entry(name, UPDATE, self.api_version, fields, now,
                                             subresource)
        _cap_update_managers(managed, self.max_update_managers)
        _set_managed(metadata, managed)
        return new


# -- request options


def default_manager(user_agent: str) -> str:
    """The manager of a non-apply write that names none: the User-Agent up to its first '/',
    printable characters only, at most 128 bytes (prefixFromUserAgent)."""
    out: list[str] = []
    size = 0
    for ch in user_agent.split("/", 1)[0]:
        if not ch.isprintable():
            continue
        n = len(ch.encode("utf-8", "surrogatepass"))
        if size + n > FIELD_MANAGER_MAX_LENGTH:
            break
        out.append(ch)
        size += n
    return "".join(out)


def validate_field_manager(field_manager: str, path: str = "fieldManager") -> list[Cause]:
    """ValidateFieldManager: at most 128 bytes, printable characters only."""
    causes: list[Cause] = []
    if len(field_manager.encode("utf-8", "surrogatepass")) > FIELD_MANAGER_MAX_LENGTH:
        causes.append(field_too_long(path, FIELD_MANAGER_MAX_LENGTH))
    causes.extend(field_invalid(path, field_manager, f"invalid character U+{ord(ch):04X}")
                  for ch in field_manager if not ch.isprintable())
    return causes


def patch_options_causes(apply: bool, field_manager: str, force: bool | None) -> list[Cause]:
    """The fieldManager and force rules of ValidatePatchOptions; the caller reports them as
    `errors.invalid("meta.k8s.io", "PatchOptions", "", causes)` (422)."""
    causes: list[Cause] = []
    if not apply:
        if force is not None:
            causes.append(field_forbidden("force", "may not be specified for non-apply patch"))
    elif not field_manager:
        causes.append(field_required("fieldManager", "is required for apply patch"))
    causes.extend(validate_field_manager(field_manager))
    return causes
