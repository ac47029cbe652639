"""meta.k8s.io Table and PartialObjectMetadata(List) for declared resources, as
apiextensions-apiserver's tableconvertor and the apiserver's response transform build them.

Columns: `Name` first, then the version's additionalPrinterColumns; a version that declares
none gets one `Age` column (type date, `.metadata.creationTimestamp`). Date cells are sent as
kube does: a human-readable age (`5m`, `3d4h`), not the timestamp.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kext.api import errors, meta
from kext.api.errors import go_value

if TYPE_CHECKING:
    from kext.api.resource import PrinterColumn, Version

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
CREATION_TIMESTAMP_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)

INCLUDE_NONE, INCLUDE_METADATA, INCLUDE_OBJECT = "None", "Metadata", "Object"


def parse_include_object(value: str | None) -> str:
    """The `includeObject` query parameter: None, Metadata (the default) or Object; 400
    otherwise."""
    if not value:
        return INCLUDE_METADATA
    if value not in (INCLUDE_NONE, INCLUDE_METADATA, INCLUDE_OBJECT):
        raise errors.bad_request(f"unrecognized includeObject value: {errors.go_quote(value)}")
    return value


# -- JSONPath (the subset of k8s.io/client-go/util/jsonpath printer columns use)


class JSONPathError(ValueError):
    pass


_TERMINATORS = frozenset(" \t\r\n.,[]$@{}")
_FILTER_OPS = ("==", "!=", "<=", ">=", "<", ">")


class JSONPath:
    """A compiled JSONPath: `.a.b`, `['a.b']`, `[0]`, `[-1]`, `[1:3]`, `[*]`, `.*`, `..a`,
    `[?(@.type=="Ready")]` (==, !=, <, >, <=, >=, or existence). find() returns every
    match; missing keys match nothing."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        text = expression.strip()
        if text.startswith("{") and text.endswith("}"):
            text = text[1:-1]
        self.steps = _parse_path(text, 0, len(text))

    def find(self, obj: Any) -> list[Any]:
        return _evaluate(self.steps, [obj], obj)

    def first(self, obj: Any) -> Any:
        """The first match, or _MISSING."""
        results = self.find(obj)
        return results[0] if results else _MISSING


_MISSING: Any = object()
Step = tuple[Any, ...]


def _parse_path(text: str, pos: int, end: int) -> list[Step]:
    steps: list[Step] = []
    if pos < end and text[pos] in "$@":
        pos += 1
    while pos < end:
        c = text[pos]
        if text.startswith("..", pos):
            steps.append(("recursive",))
            pos += 1
            continue
        if c == ".":
            pos += 1
            start = pos
            name: list[str] = []
            while pos < end and text[pos] not in _TERMINATORS:
                if text[pos] == "\\" and pos + 1 < end:
                    pos += 1
                name.append(text[pos])
                pos += 1
            if pos == start:
                if pos >= end or text[pos] == "[":
                    continue
                raise JSONPathError(f"unrecognized character in action: {text[pos]!r}")
            field = "".join(name)
            steps.append(("wildcard",) if field == "*" else ("field", field))
            continue
        if c == "[":
            close = _matching_bracket(text, pos, end)
            steps.append(_parse_bracket(text[pos + 1:close].strip()))
            pos = close + 1
            continue
        if c in " \t":
            pos += 1
            continue
        raise JSONPathError(f"unrecognized character in action: {c!r}")
    return steps


def _matching_bracket(text: str, pos: int, end: int) -> int:
    depth, quote = 0, ""
    for i in range(pos, end):
        c = text[i]
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i
    raise JSONPathError("unclosed array expect ]")


def _parse_bracket(inner: str) -> Step:
    if inner == "*":
        return ("wildcard",)
    if inner.startswith("?(") and inner.endswith(")"):
        return _parse_filter(inner[2:-1].strip())
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        return ("field", inner[1:-1])
    selections: list[int | slice] = []
    for part in inner.split(","):
        part = part.strip()
        try:
            if ":" in part:
                bounds = [int(b) if b.strip() else None for b in part.split(":")]
                if len(bounds) > 3:
                    raise ValueError(part)
                selections.append(slice(*bounds))
            else:
                selections.append(int(part))
        except ValueError:
            raise JSONPathError(f"invalid array index {part}") from None
    return ("index", tuple(selections))


def _parse_filter(expression: str) -> Step:
    quote = ""
    for i, c in enumerate(expression):
        if quote:
            if c == quote:
                quote = ""
            continue
        if c in "'\"":
            quote = c
            continue
        for op in _FILTER_OPS:
            if expression.startswith(op, i):
                left = expression[:i].strip()
                right = expression[i + len(op):].strip()
                return ("filter", _operand(left), op, _operand(right))
    return ("filter", _operand(expression), "exists", None)


def _operand(text: str) -> tuple[str, Any]:
    if text.startswith(("@", "$")):
        return ("path", _parse_path(text, 0, len(text)))
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return ("value", text[1:-1])
    if text in ("true", "false"):
        return ("value", text == "true")
    try:
        return ("value", int(text))
    except ValueError:
        pass
    try:
        return ("value", float(text))
    except ValueError:
        raise JSONPathError(f"unrecognized filter operand {text}") from None


def _evaluate(steps: list[Step], values: list[Any], root: Any) -> list[Any]:
    for i, step in enumerate(steps):
        kind = step[0]
        if kind == "recursive":
            expanded: list[Any] = []
            for v in values:
                _descendants(v, expanded)
            values = expanded
            continue
        out: list[Any] = []
        if kind == "field":
            name = step[1]
            for v in values:
                if isinstance(v, Mapping) and name in v:
                    out.append(v[name])
        elif kind == "wildcard":
            for v in values:
                if isinstance(v, Mapping):
                    out.extend(v[k] for k in sorted(v))
                elif isinstance(v, list):
                    out.extend(v)
        elif kind == "index":
            for v in values:
                if not isinstance(v, list):
                    continue
                for selection in step[1]:
                    if isinstance(selection, slice):
                        out.extend(v[selection])
                    elif -len(v) <= selection < len(v):
                        out.append(v[selection])
        elif kind == "filter":
            for v in values:
                items = v if isinstance(v, list) else (
                    [v[k] for k in sorted(v)] if isinstance(v, Mapping) else [])
                out.extend(item for item in items if _passes(step, item, root))
        values = out
        if not values and i < len(steps) - 1:
            return []
    return values


def _descendants(value: Any, out: list[Any]) -> None:
    out.append(value)
    if isinstance(value, Mapping):
        for k in sorted(value):
            _descendants(value[k], out)
    elif isinstance(value, list):
        for v in value:
            _descendants(v, out)


def _resolve(operand: tuple[str, Any], current: Any, root: Any) -> list[Any]:
    kind, payload = operand
    if kind == "value":
        return [payload]
    return _evaluate(payload, [current], root)


def _passes(step: Step, item: Any, root: Any) -> bool:
    _, left, op, right = step
    lefts = _resolve(left, item, root)
    if op == "exists":
        return bool(lefts)
    if len(lefts) != 1:
        return False
    rights = _resolve(right, item, root)
    if len(rights) != 1:
        return False
    a, b = lefts[0], rights[0]
    if op == "==":
        return _same(a, b)
    if op == "!=":
        return not _same(a, b)
    try:
        if op == "<":
            return bool(a < b)
        if op == ">":
            return bool(a > b)
        if op == "<=":
            return bool(a <= b)
        return bool(a >= b)
    except TypeError:
        return False


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b) and (isinstance(a, str) == isinstance(b, str))


# -- cells


def human_duration(seconds: float) -> str:
    """An age as kubectl shows it (k8s.io/apimachinery/pkg/util/duration.HumanDuration)."""
    if math.isnan(seconds):
        return "<invalid>"
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if rest == 0 else f"{years}y{rest}d"
    return f"{hours // 24 // 365}y"


def _age(value: Any, now: datetime) -> Any:
    if not isinstance(value, str):
        return None
    if value in ("", "null"):
        return "<unknown>"
    when = meta.parse_time(value)
    if when is None:
        return "<invalid>"
    return human_duration((now - when).total_seconds())


def _cell(column_type: str, value: Any, now: datetime) -> Any:
    if value is _MISSING:
        return None
    if value is None:
        return None  # jsonpath cannot print null: the cell is empty
    if column_type == "string":
        return go_value(value, quote_strings=False)
    if column_type == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return int(value)
    if column_type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "date":
        return _age(value, now)
    return None


# -- tables


class TableConvertor:
    """The Table rendering of one version, built once (column definitions and compiled
    JSONPaths); `table` turns objects into a meta.k8s.io Table."""

    def __init__(self, version: Version) -> None:
        columns: tuple[PrinterColumn, ...] = version.printer_columns
        definitions: list[dict[str, Any]] = [{
            "name": "Name", "type": "string", "format": "name",
            "description": NAME_DESCRIPTION, "priority": 0,
        }]
        self.paths: list[tuple[str, JSONPath | None]] = []
        if not columns:
            definitions.append({
                "name": "Age", "type": "date", "format": "",
                "description": CREATION_TIMESTAMP_DESCRIPTION, "priority": 0,
            })
            self.paths.append(("date", JSONPath(".metadata.creationTimestamp")))
        for column in columns:
            definitions.append({
                "name": column.name, "type": column.type, "format": column.format,
                "description": column.description
                or f"Custom resource definition column (in JSONPath format): {column.json_path}",
                "priority": column.priority,
            })
            try:
                path: JSONPath | None = JSONPath(column.json_path)
            except JSONPathError:
                path = None
            self.paths.append((column.type, path))
        self.column_definitions = definitions

    def cells(self, obj: Mapping[str, Any], now: datetime | None = None) -> list[Any]:
        """One row's cells: the name, then one value per column (None when absent)."""
        now = now or datetime.now(UTC)
        metadata = obj.get("metadata") or {}
        cells: list[Any] = [metadata.get("name", "")]
        for column_type, path in self.paths:
            cells.append(None if path is None else _cell(column_type, path.first(obj), now))
        return cells

    def table(self, objects: Iterable[Mapping[str, Any]], *, resource_version: str = "",
              continue_token: str = "", remaining_item_count: int | None = None,
              include_object: str = INCLUDE_METADATA, no_headers: bool = False,
              meta_version: str = "v1", now: datetime | None = None) -> dict[str, Any]:
        """A Table of objects (one for a get or a watch event, all items for a list).
        include_object picks what each row's `object` is: PartialObjectMetadata, the object
        itself, or null."""
        now = now or datetime.now(UTC)
        api_version = f"meta.k8s.io/{meta_version}"
        rows = []
        for obj in objects:
            row: dict[str, Any] = {"cells": self.cells(obj, now)}
            if include_object == INCLUDE_OBJECT:
                row["object"] = obj
            elif include_object == INCLUDE_NONE:
                row["object"] = None
            else:
                row["object"] = partial_object_metadata(obj, meta_version)
            rows.append(row)
        list_meta = meta.list_meta(resource_version, continue_token, remaining_item_count)
        return {
            "kind": "Table",
            "apiVersion": api_version,
            "metadata": list_meta,
            "columnDefinitions": None if no_headers else self.column_definitions,
            "rows": rows,
        }


_convertors: dict[int, tuple[Version, TableConvertor]] = {}


def table_convertor(version: Version) -> TableConvertor:
    """The TableConvertor of a version, built on first use."""
    cached = _convertors.get(id(version))
    if cached is None or cached[0] is not version:
        cached = (version, TableConvertor(version))
        _convertors[id(version)] = cached
    return cached[1]


def partial_object_metadata(obj: Mapping[str, Any], meta_version: str = "v1") -> dict[str, Any]:
    """The PartialObjectMetadata of an object (its metadata only)."""
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{meta_version}",
        "metadata": obj.get("metadata") or {},
    }


def partial_object_metadata_list(objects: Iterable[Mapping[str, Any]], *,
                                 resource_version: str = "", continue_token: str = "",
                                 remaining_item_count: int | None = None,
                                 meta_version: str = "v1") -> dict[str, Any]:
    """A PartialObjectMetadataList of objects, with the list's metadata."""
    list_meta = meta.list_meta(resource_version, continue_token, remaining_item_count)
    return {
        "kind": "PartialObjectMetadataList",
        "apiVersion": f"meta.k8s.io/{meta_version}",
        "metadata": list_meta,
        "items": [partial_object_metadata(o, meta_version) for o in objects],
    }
