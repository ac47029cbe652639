"""Field paths, sets of them and their `fieldsV1` encoding (cf. sigs.k8s.io/structured-merge-diff
fieldpath, and managedfields' internal fields.go and pathelement.go).

A field set is a Python set of paths; a path is a tuple of path elements in their fieldsV1
spelling: `f:spec` (a field), `k:{"name":"a"}` (an item of a `map` list), `v:"x"` (an item of
a `set` list), `i:0` (an index, only inside values nothing can own granularly).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from kext.api.errors import go_float, go_json, go_quote

Path = tuple[str, ...]


# -- path elements


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
            return "k:" + go_json(value)
        return "v:" + go_json(value)
    return None


# Cached by (type, value) so that true and 1, equal in Python, stay different elements.
@lru_cache(maxsize=8192)
def key_element(keys: tuple[tuple[str, str, Any], ...]) -> str:
    """The `k:` element of a map-list item from its (key, type name, value) triples."""
    return "k:" + go_json({name: value for name, _, value in keys})


@lru_cache(maxsize=8192)
def value_element(kind: str, value: Any) -> str:
    """The `v:` element of a set-list item; `kind` (its type name) keeps true and 1 apart."""
    return "v:" + go_json(value)


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


def element_string(element: str) -> str:
    """A path element as it appears in a path's text: `.spec`, `[name="a"]`, `[="x"]`, `[0]`."""
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
    return "".join(element_string(e) for e in path)


# -- sets and fieldsV1


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


def _trie(paths: Iterable[Path]) -> dict[str, list[Any]]:
    # element -> [is a member, children]: the tree SMD's Set is.
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
    return trie


def set_to_fields(paths: Iterable[Path]) -> dict[str, Any]:
    """The `fieldsV1` encoding of a set of paths, keys in SMD's order, `.` first."""
    return _emit_fields(_trie(paths))


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


def iterate_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Paths in SMD's set order: at each level members first, then children, each sorted."""
    yield from _iterate_trie(_trie(paths), ())


def _iterate_trie(trie: dict[str, list[Any]], prefix: Path) -> Iterator[Path]:
    ordered = sorted(trie, key=_element_order)
    for element in ordered:
        if trie[element][0]:
            yield (*prefix, element)
    for element in ordered:
        if trie[element][1]:
            yield from _iterate_trie(trie[element][1], (*prefix, element))


def prefixes(paths: Iterable[Path]) -> set[Path]:
    """Every proper prefix of the paths: the nodes something in the set lies below."""
    return {path[:i] for path in paths for i in range(1, len(path))}
