"""A structural schema seen from CEL, as apiextensions types it: objects with properties are
message types (so a rule naming an undeclared field fails to compile), objects with
additionalProperties are maps, arrays lists, integers int, numbers double, strings string
(bytes, timestamp or duration for the formats byte, date/date-time and duration),
int-or-string and unknown fields dyn. Property names are escaped as kube escapes them
(`x-prop` is `x__dash__prop`); names CEL cannot spell are not visible.

`SchemaTypes` builds the message descriptors for one schema, and for every node the function
that turns a JSON value into what CEL reads (numbers as floats, formats decoded, escaped keys,
nulls dropped) — the identity where nothing needs changing.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from google.protobuf import descriptor_pb2, duration_pb2, timestamp_pb2

_F = descriptor_pb2.FieldDescriptorProto
_IDENTIFIER = re.compile(r"^[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*$")
_RESERVED = frozenset({
    "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
    "function", "if", "import", "let", "loop", "package", "namespace", "return", "var", "void",
    "while",
})
_SCALARS = {"integer": (_F.TYPE_INT64, "int"), "number": (_F.TYPE_DOUBLE, "double"),
            "boolean": (_F.TYPE_BOOL, "bool"), "string": (_F.TYPE_STRING, "string")}
_WELL_KNOWN = {"date": "google.protobuf.Timestamp", "date-time": "google.protobuf.Timestamp",
               "datetime": "google.protobuf.Timestamp", "duration": "google.protobuf.Duration"}

Convert = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def escape(name: str) -> str | None:
    """A property's name as a CEL identifier, or None when CEL cannot read it."""
    if not _IDENTIFIER.match(name):
        return None
    if name in _RESERVED:
        return f"__{name}__"
    return (name.replace("__", "__underscores__").replace(".", "__dot__")
            .replace("-", "__dash__").replace("/", "__slash__"))


class SchemaTypes:
    """The CEL types of one openAPIV3Schema, in a descriptor file of their own."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.file = descriptor_pb2.FileDescriptorProto(
            name=f"{package.replace('.', '/')}.proto", package=package, syntax="proto2",
            dependency=["google/protobuf/struct.proto", "google/protobuf/timestamp.proto",
                        "google/protobuf/duration.proto"])
        self._count = 0
        self._types: dict[int, str] = {}

    def cel_type(self, schema: dict[str, Any], *, embedded: bool = False) -> str:
        """The CEL type signature of a schema node (messages are added on the way)."""
        key = id(schema)
        if key not in self._types or embedded:
            self._types[key] = self._declare(schema, embedded)
        return self._types[key]

    def object_type(self, fields: Iterable[str]) -> str:
        """A message type with these fields, each dyn, and no others (an admission policy's
        `variables`: naming any other field fails to compile)."""
        self._count += 1
        name = f"Object{self._count}"
        message = self.file.message_type.add(name=name)
        for number, field_name in enumerate(fields, start=1):
            message.field.add(name=field_name, number=number, label=_F.LABEL_OPTIONAL,
                              type=_F.TYPE_MESSAGE, type_name=".google.protobuf.Value")
        return f"{self.package}.{name}"

    def _declare(self, s: dict[str, Any], embedded: bool) -> str:
        t = s.get("type")
        if s.get("x-kubernetes-int-or-string") is True:
            return "dyn"
        if t == "array":
            items = s.get("items")
            return f"list({self.cel_type(items) if isinstance(items, dict) else 'dyn'})"
        if t == "object" or embedded or s.get("x-kubernetes-embedded-resource") is True:
            props = s.get("properties")
            additional = s.get("additionalProperties")
            if props or embedded or s.get("x-kubernetes-embedded-resource") is True:
                return self._message(s, embedded or s.get("x-kubernetes-embedded-resource")
                                     is True)
            if isinstance(additional, dict):
                return f"map(string, {self.cel_type(additional)})"
            return "map(string, dyn)"
        if t == "string":
            fmt = s.get("format")
            if fmt == "byte":
                return "bytes"
            if fmt in _WELL_KNOWN:
                return _WELL_KNOWN[fmt]
            return "string"
        if t in _SCALARS:
            return _SCALARS[t][1]
        return "dyn"

    def _message(self, s: dict[str, Any], embedded: bool) -> str:
        self._count += 1
        name = f"Object{self._count}"
        full = f"{self.package}.{name}"
        message = self.file.message_type.add(name=name)
        props: dict[str, Any] = dict(s.get("properties") or {})
        if embedded:
            props.setdefault("apiVersion", {"type": "string"})
            props.setdefault("kind", {"type": "string"})
            props["metadata"] = {"type": "object", "properties": {
                "name": {"type": "string"}, "generateName": {"type": "string"}}}
        number = 0
        for prop, sub in props.items():
            field_name = escape(prop)
            if field_name is None or not isinstance(sub, dict):
                continue
            number += 1
            self._field(message, full, field_name, number, sub)
        return full

    def _field(self, message: descriptor_pb2.DescriptorProto, owner: str, name: str,
               number: int, s: dict[str, Any]) -> None:
        signature = self.cel_type(s)
        field = message.field.add(name=name, number=number, label=_F.LABEL_OPTIONAL)
        if signature.startswith("list("):
            items = s.get("items")
            inner = self.cel_type(items if isinstance(items, dict) else {})
            if self._set_singular(field, inner):
                field.label = _F.LABEL_REPEATED
            else:
                field.type, field.type_name = _F.TYPE_MESSAGE, ".google.protobuf.ListValue"
        elif signature.startswith("map("):
            additional = s.get("additionalProperties")
            inner = self.cel_type(additional) if isinstance(additional, dict) else "dyn"
            entry_name = _map_entry_name(name)
            entry = message.nested_type.add(name=entry_name)
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
            value = entry.field.add(name="value", number=2, label=_F.LABEL_OPTIONAL)
            if not self._set_singular(value, inner):
                value.type, value.type_name = _F.TYPE_MESSAGE, ".google.protobuf.Value"
            field.type, field.type_name = _F.TYPE_MESSAGE, f".{owner}.{entry_name}"
            field.label = _F.LABEL_REPEATED
        elif not self._set_singular(field, signature):
            field.type, field.type_name = _F.TYPE_MESSAGE, ".google.protobuf.Value"

    @staticmethod
    def _set_singular(field: descriptor_pb2.FieldDescriptorProto, signature: str) -> bool:
        simple = {"int": _F.TYPE_INT64, "double": _F.TYPE_DOUBLE, "bool": _F.TYPE_BOOL,
                  "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES}
        if signature in simple:
            field.type = simple[signature]
            return True
        if signature.startswith(("list(", "map(")) or signature == "dyn":
            return False
        field.type, field.type_name = _F.TYPE_MESSAGE, f".{signature}"
        return True


def _map_entry_name(field: str) -> str:
    # protobuf requires a map field's entry message to be named after the field, CamelCased.
    out, upper = [], True
    for ch in field:
        if ch == "_":
            upper = True
            continue
        out.append(ch.upper() if upper else ch)
        upper = False
    return "".join(out) + "Entry"


# -- values


def converter(s: dict[str, Any], *, embedded: bool = False) -> Convert | None:
    """The function that turns a JSON value of `s` into CEL's view, or None when the JSON
    value already is that view."""
    t = s.get("type")
    if s.get("x-kubernetes-int-or-string") is True:
        return None
    if t == "number":
        return _to_double
    if t == "string":
        return _FORMATS.get(s.get("format", ""))
    if t == "array":
        items = s.get("items")
        inner = converter(items) if isinstance(items, dict) else None
        if inner is None:
            return None
        item = inner

        def convert_list(value: Any) -> Any:
            if type(value) is not list:
                return value
            return [item(v) if v is not None else None for v in value]
        return convert_list
    props = s.get("properties")
    additional = s.get("additionalProperties")
    embedded = embedded or s.get("x-kubernetes-embedded-resource") is True
    if props or embedded:
        return _object_converter(props or {}, embedded)
    if isinstance(additional, dict):
        inner = converter(additional)
        nullable = additional.get("nullable") is True
        if inner is None and not nullable:
            return None
        each = inner or _identity

        def convert_map(value: Any) -> Any:
            if type(value) is not dict:
                return value
            return {k: each(v) for k, v in value.items() if v is not None}
        return convert_map
    return None


def _object_converter(props: dict[str, Any], embedded: bool) -> Convert | None:
    plan: list[tuple[str, str, Convert | None]] = []
    changes = embedded
    for prop, sub in props.items():
        name = escape(prop)
        if name is None or not isinstance(sub, dict):
            changes = True
            continue
        inner = converter(sub)
        changes = changes or name != prop or inner is not None or sub.get("nullable") is True
        plan.append((prop, name, inner))
    if not changes:
        return None
    known = {prop for prop, _, _ in plan}

    def convert_object(value: Any) -> Any:
        if type(value) is not dict:
            return value
        out: dict[str, Any] = {}
        for prop, name, inner in plan:
            v = value.get(prop)
            if v is not None:
                out[name] = inner(v) if inner is not None else v
        if embedded:
            for key in ("apiVersion", "kind"):
                if key not in known and key in value:
                    out[key] = value[key]
            metadata = value.get("metadata")
            if type(metadata) is dict:
                out["metadata"] = {k: metadata[k] for k in ("name", "generateName")
                                   if k in metadata}
        return out
    return convert_object


def _to_double(value: Any) -> Any:
    return float(value) if type(value) is int else value


def _to_bytes(value: Any) -> Any:
    try:
        return base64.b64decode(value, validate=True) if type(value) is str else value
    except ValueError:
        return value


def _to_timestamp(value: Any) -> Any:
    if type(value) is not str:
        return value
    text = value.replace("z", "Z").replace("t", "T")
    if len(text) == 10:
        text += "T00:00:00Z"
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return value
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


_DURATION = re.compile(r"([-+]?(?:\d+(?:\.\d*)?|\.\d+))(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                 "m": 60.0, "h": 3600.0}


def _to_duration(value: Any) -> Any:
    if type(value) is not str:
        return value
    text = value.strip()
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    if text == "0":
        return duration_pb2.Duration()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return value
    total = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts) * sign
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(total * 1e9))
    return d


_FORMATS: dict[str, Convert] = {
    "byte": _to_bytes, "date": _to_timestamp, "date-time": _to_timestamp,
    "datetime": _to_timestamp, "duration": _to_duration,
}
