"""Values typed by a version's schema, as structured-merge-diff's typed package walks them:
compare, merge, the field set of a value, removal of fields, validation of an applied
configuration (cf. sigs.k8s.io/structured-merge-diff typed and schema).

A version's `Atom` tree is its SMD schema, derived from the structural schema kext compiles
once per version (kext.api.schema.Schema), as kube's type converter derives it from a CRD's:
what is a struct (named fields), a granular map (`additionalProperties`, or the deduced keys
under `x-kubernetes-preserve-unknown-fields`), an atomic map or list (owned as a whole), or an
associative list (`set` or `map`). The walks take plain JSON values and never mutate them.
"""

from __future__ import annotations

from typing import Any

from kext.api.errors import go_json, go_type
from kext.api.schema import Node, Schema
from kext.registry.fieldmanager.fieldpath import (
    Path,
    element_string,
    key_element,
    value_element,
)

SCALAR, MAP, LIST, DEDUCED, UNTYPED = range(5)

_ABSENT: Any = object()


class Atom:
    """One type of SMD's schema: a scalar, a map (struct fields and/or an element type), a
    list, a deduced value (preserve-unknown-fields) or an untyped atomic value."""

    __slots__ = ("atomic", "elem", "fields", "key_defaults", "keys", "kind", "list_type",
                 "scalar")

    def __init__(self, kind: int, *, scalar: str = "", fields: dict[str, Atom] | None = None,
                 elem: Atom | None = None, atomic: bool = False, list_type: str = "atomic",
                 keys: tuple[str, ...] = (), key_defaults: dict[str, Any] | None = None) -> None:
        self.kind = kind
        self.scalar = scalar
        self.fields: dict[str, Atom] = fields or {}
        self.elem = elem
        self.atomic = atomic
        self.list_type = list_type
        self.keys = keys
        self.key_defaults: dict[str, Any] = key_defaults or {}


_STRING = Atom(SCALAR, scalar="string")
_NUMERIC = Atom(SCALAR, scalar="numeric")
_BOOLEAN = Atom(SCALAR, scalar="boolean")
_DEDUCED_ATOM = Atom(DEDUCED)
_UNTYPED_ATOM = Atom(UNTYPED)

_OWNER_REFERENCE = Atom(MAP, fields={
    "apiVersion": _STRING, "kind": _STRING, "name": _STRING, "uid": _STRING,
    "controller": _BOOLEAN, "blockOwnerDeletion": _BOOLEAN,
})
# meta/v1 ObjectMeta, which kube's CRD OpenAPI puts under every metadata it serves.
_OBJECT_META = Atom(MAP, fields={
    "name": _STRING, "generateName": _STRING, "namespace": _STRING, "selfLink": _STRING,
    "uid": _STRING, "resourceVersion": _STRING, "generation": _NUMERIC,
    "creationTimestamp": _STRING, "deletionTimestamp": _STRING,
    "deletionGracePeriodSeconds": _NUMERIC,
    "labels": Atom(MAP, elem=_STRING), "annotations": Atom(MAP, elem=_STRING),
    "ownerReferences": Atom(LIST, elem=_OWNER_REFERENCE, list_type="map", keys=("uid",)),
    "finalizers": Atom(LIST, elem=_STRING, list_type="set"),
    "managedFields": Atom(LIST, elem=_UNTYPED_ATOM),
})


# -- the SMD schema of a structural schema


def resource_atom(schema: Schema) -> Atom:
    """The type of a version's objects: its compiled schema, typed as SMD types it."""
    return _atom(schema.root)


def _atom(node: Node | None) -> Atom:
    if node is None or node.int_or_string:
        return _UNTYPED_ATOM
    t = node.type
    if t == "array":
        item = _atom(node.items)
        if node.list_type == "map":
            keys = tuple(k for k in node.list_map_keys if isinstance(k, str))
            props = node.items.properties if node.items is not None else None
            defaults = {k: props[k].default for k in keys
                        if props is not None and k in props and props[k].has_default}
            return Atom(LIST, elem=item, list_type="map", keys=keys, key_defaults=defaults)
        if node.list_type == "set":
            return Atom(LIST, elem=item, list_type="set")
        return Atom(LIST, elem=item)
    if t == "object" or node.embedded or node.properties is not None or node.has_additional:
        fields = {k: _atom(v) for k, v in (node.properties or {}).items()}
        if node.embedded:
            fields.setdefault("apiVersion", _STRING)
            fields.setdefault("kind", _STRING)
            fields["metadata"] = _OBJECT_META
        elem: Atom | None = None
        if node.additional is not None:
            elem = _atom(node.additional)
        elif (node.has_additional and node.additional_allows) or node.preserve:
            elem = _DEDUCED_ATOM
        return Atom(MAP, fields=fields, elem=elem, atomic=node.map_type == "atomic")
    if t in ("integer", "number"):
        return _NUMERIC
    if t == "string":
        return _STRING
    if t == "boolean":
        return _BOOLEAN
    return _DEDUCED_ATOM if node.preserve else _UNTYPED_ATOM


def _child_atom(t: Atom, key: str) -> tuple[Atom, bool]:
    """The type of a map entry and whether it is a named (struct) field."""
    if t.kind == DEDUCED:
        return _DEDUCED_ATOM, False
    ft = t.fields.get(key)
    if ft is not None:
        return ft, True
    return (t.elem or _UNTYPED_ATOM), False


# -- list items as path elements


class _KeyError(ValueError):
    pass


def _item_element(t: Atom, item: Any) -> str:
    """The path element of an associative list item (listItemToPathElement); _KeyError when
    it has none."""
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
            return key_element(tuple(keys))
        except TypeError:  # an unhashable key value: rare, not worth caching
            return "k:" + go_json({name: value for name, _, value in keys})
    if isinstance(item, dict):
        raise _KeyError("associative list without keys has an element that's a map type")
    if isinstance(item, list):
        raise _KeyError("not supported: associative list with lists as elements")
    if item is None:
        raise _KeyError("associative list without keys has an element that's an explicit null")
    return value_element(type(item).__name__, item)


def _index_items(t: Atom, items: list[Any]) -> tuple[list[str], dict[str, Any], set[str]]:
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


# -- compare


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


class Comparison:
    """typed.Comparison: paths added, modified and removed between two values, with every
    map, list and item that appears or disappears as a whole counted too."""

    __slots__ = ("added", "modified", "removed")

    def __init__(self) -> None:
        self.added: set[Path] = set()
        self.modified: set[Path] = set()
        self.removed: set[Path] = set()

    def changed(self) -> bool:
        return bool(self.added or self.modified or self.removed)

    def _walk(self, lhs: Any, rhs: Any, t: Atom, path: Path) -> None:
        if t.kind == MAP or (t.kind == DEDUCED and (type(lhs) is dict or type(rhs) is dict)):
            if self._map(lhs, rhs, t, path):
                return
        elif t.kind == LIST and self._list(lhs, rhs, t, path):
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

    def _map(self, lhs: Any, rhs: Any, t: Atom, path: Path) -> bool:
        lm = lhs if type(lhs) is dict else None
        rm = rhs if type(rhs) is dict else None
        if (lm is None and lhs is not _ABSENT and lhs is not None) or (
                rm is None and rhs is not _ABSENT and rhs is not None):
            return False
        if (t.kind == MAP and t.atomic) or (not lm and not rm):
            return False
        if lm:
            for key, lv in lm.items():
                rv = rm.get(key, _ABSENT) if rm else _ABSENT
                if lv is rv:
                    continue
                self._walk(lv, rv, _child_atom(t, key)[0], (*path, "f:" + key))
        if rm:
            for key, rv in rm.items():
                if lm is None or key not in lm:
                    self._walk(_ABSENT, rv, _child_atom(t, key)[0], (*path, "f:" + key))
        if path:
            self._appeared(lhs, rhs, path)
        return True

    def _list(self, lhs: Any, rhs: Any, t: Atom, path: Path) -> bool:
        ll = lhs if type(lhs) is list else None
        rl = rhs if type(rhs) is list else None
        if (ll is None and lhs is not _ABSENT and lhs is not None) or (
                rl is None and rhs is not _ABSENT and rhs is not None):
            return False
        if t.list_type == "atomic" or (not ll and not rl):
            return False
        elem = t.elem or _UNTYPED_ATOM
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
                self._walk(l_items[element], rv, elem, (*path, element))
        for element in r_order:
            if element not in l_items:
                self._walk(_ABSENT, r_items[element], elem, (*path, element))
        self._appeared(lhs, rhs, path)
        return True


def compare(lhs: Any, rhs: Any, t: Atom) -> Comparison:
    """What changed from `lhs` to `rhs`, two values of type `t` (TypedValue.Compare)."""
    c = Comparison()
    c._walk(lhs, rhs, t, ())
    return c


# -- merge


def merge(lhs: Any, rhs: Any, t: Atom) -> Any:
    """typed.Merge with the applied value `rhs` winning at every leaf; unchanged subtrees are
    shared with the inputs, containers on merged paths are new."""
    if rhs is _ABSENT:
        return lhs
    if lhs is _ABSENT:
        return rhs
    if t.kind == MAP or (t.kind == DEDUCED and type(lhs) is dict and type(rhs) is dict):
        lm = lhs if type(lhs) is dict else None
        rm = rhs if type(rhs) is dict else None
        if (lm is None and lhs is not None) or (rm is None and rhs is not None):
            return rhs
        if (t.kind == MAP and t.atomic) or (not lm and not rm):
            return rhs
        out: dict[str, Any] = {}
        if lm:
            for key, lv in lm.items():
                rv = rm.get(key, _ABSENT) if rm else _ABSENT
                out[key] = lv if rv is _ABSENT else merge(lv, rv, _child_atom(t, key)[0])
        if rm:
            for key, rv in rm.items():
                if lm is None or key not in lm:
                    out[key] = rv
        return out
    if t.kind == LIST:
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


def _merge_items(lhs: list[Any], rhs: list[Any], t: Atom) -> list[Any]:
    # SMD's order: live-only items keep their place, items both sides share follow the
    # applied order, applied-only items come where the applied list puts them.
    elem = t.elem or _UNTYPED_ATOM
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
                out.append(merge(l_items[element], r_items[element], elem))
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
            out.append(merge(l_items.get(element, _ABSENT), r_items[element], elem))
            ri += 1
            if next_shared < len(shared) and shared[next_shared] == element:
                next_shared += 1
    return out


# -- field sets of values


def to_field_set(value: Any, t: Atom) -> set[Path]:
    """typed.ToFieldSet: the leaves of a value, its non-field map keys and its list items."""
    out: set[Path] = set()
    _to_set(value, t, (), out)
    return out


def _to_set(value: Any, t: Atom, path: Path, out: set[Path]) -> None:
    kind = t.kind
    if kind in (SCALAR, UNTYPED):
        out.add(path)
        return
    if kind == DEDUCED:
        if type(value) is not dict:
            out.add(path)
            return
        for key, v in value.items():
            child = (*path, "f:" + key)
            _to_set(v, _DEDUCED_ATOM, child, out)
            out.add(child)
        return
    if kind == MAP:
        if t.atomic:
            out.add(path)
            return
        if type(value) is not dict:
            if value is not None:
                out.add(path)
            return
        for key, v in value.items():
            child = (*path, "f:" + key)
            ct, named = _child_atom(t, key)
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
    elem = t.elem or _UNTYPED_ATOM
    for element in order:
        child = (*path, element)
        if element not in duplicates:
            _to_set(items[element], elem, child, out)
        out.add(child)


# -- removing fields


# Never removed whole (kube never gets there: appliers always send a name).
_NEVER_REMOVED: frozenset[Path] = frozenset({("f:apiVersion",), ("f:kind",), ("f:metadata",)})


def remove_unowned(value: Any, t: Atom, last: set[Path], last_below: set[Path],
                   owned: set[Path], owned_below: set[Path]) -> Any:
    """`value` without what is in `last` and not in `owned` (the applier's previous set and
    what anybody owns now; `*_below` are their prefixes). A struct field counts as owned when
    something under it is (EnsureNamedFieldsAreMembers); a container emptied by the removal
    becomes null, as SMD's remove walker leaves it."""
    return _remove(value, t, (), last, last_below, owned, owned_below)


def _remove(value: Any, t: Atom, path: Path, last: set[Path], last_below: set[Path],
            owned: set[Path], owned_below: set[Path]) -> Any:
    if t.kind == MAP or (t.kind == DEDUCED and type(value) is dict):
        if type(value) is not dict or (t.kind == MAP and t.atomic):
            return value
        out: dict[str, Any] = {}
        for key, v in value.items():
            child = (*path, "f:" + key)
            ct, named = _child_atom(t, key)
            in_last = child in last or (named and child in last_below)
            if in_last and child not in _NEVER_REMOVED and not (
                    child in owned or (named and child in owned_below)):
                continue
            out[key] = _remove(v, ct, child, last, last_below, owned, owned_below) if (
                child in last_below) else v
        return out if out or not value else None
    if t.kind == LIST and t.list_type != "atomic" and type(value) is list and value:
        elem = t.elem or _UNTYPED_ATOM
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
            kept.append(_remove(item, elem, child, last, last_below, owned, owned_below) if (
                child in last_below) else item)
        return kept or None
    return value


# -- validation (typed.AsTyped without duplicates)


def _go_shown(value: Any) -> str:
    return f"&value.valueUnstructured{{Value:{go_json(value)}}}"


def validation_message(value: Any, t: Atom) -> str:
    """Why `value` is not a value of type `t`, in SMD's words; "" when it is one."""
    errs: list[tuple[str, str]] = []
    _validate(value, t, "", errs)
    lines = [f"{p}: {m}" if p else m for p, m in errs]
    if len(lines) <= 1:
        return "".join(lines)
    return "\n".join(["errors:", *("  " + line for line in lines)])


def _validate(value: Any, t: Atom, path: str, errs: list[tuple[str, str]]) -> None:
    kind = t.kind
    if value is None or kind == UNTYPED:
        return
    if kind == SCALAR:
        scalar = t.scalar
        if scalar == "numeric" and (isinstance(value, bool) or not isinstance(
                value, (int, float))):
            errs.append((path, f"expected numeric (int or float), got {go_type(value)}"))
        elif scalar == "string" and not isinstance(value, str):
            errs.append((path, f"expected string, got {_go_shown(value)}"))
        elif scalar == "boolean" and not isinstance(value, bool):
            errs.append((path, f"expected boolean, got {_go_shown(value)}"))
        return
    if kind == DEDUCED:
        if isinstance(value, dict):
            for key in sorted(value):
                _validate(value[key], _DEDUCED_ATOM, f"{path}.{key}", errs)
        return
    if kind == MAP:
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
    elem = t.elem or _UNTYPED_ATOM
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
        shown = element_string(element)
        if element in seen:
            errs.append((path, f"duplicate entries for key {shown}"))
        seen.add(element)
        _validate(item, elem, path + shown, errs)
