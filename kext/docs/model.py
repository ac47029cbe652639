"""What an API reference says about each declared resource, read from its CRD: one `KindDoc`
per served version, its fields as a flat tree in schema order, and an example object."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kext.api.resource import PrinterColumn, ResourceDefinition, Version

# Schema keywords shown as a field's validation, in this order, as `keyword: value`.
_CONSTRAINTS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "multipleOf",
                "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems",
                "minProperties", "maxProperties", "x-kubernetes-list-type",
                "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "nullable",
                "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
                "allOf", "anyOf", "oneOf", "not")
_STANDARD = {
    "apiVersion": "APIVersion defines the versioned schema of this representation of an "
                  "object: always {api_version}.",
    "kind": "Kind is the REST resource this object represents: always {kind}.",
    "metadata": "Standard object metadata: name, namespace, labels, annotations, "
                "resourceVersion and the rest of meta/v1 ObjectMeta.",
}


@dataclass(frozen=True)
class Rule:
    """One CEL rule of `x-kubernetes-validations`."""

    rule: str
    message: str = ""
    message_expression: str = ""
    reason: str = ""
    field_path: str = ""
    optional_old_self: bool = False

    @property
    def transition(self) -> bool:
        """Whether the rule compares with the stored object (checked on updates only)."""
        return "oldSelf" in self.rule


@dataclass(frozen=True)
class Field:
    """One field of a kind's schema. path is dotted from the object's root, `[*]` stands
    for every item of a list and `.*` for every value of a map (JSONPath's spelling)."""

    path: str
    depth: int
    type: str
    format: str = ""
    required: bool = False
    default: str = ""  # JSON, as written in the schema
    enum: tuple[str, ...] = ()  # JSON values
    constraints: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    description: str = ""

    @property
    def parent(self) -> str:
        """The path up to and including the separator before this field's own name."""
        return self.path[: len(self.path) - len(self.name)]

    @property
    def name(self) -> str:
        for marker in ("[*]", ".*"):
            if self.path.endswith(marker):
                return marker.lstrip(".")
        return self.path.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class KindDoc:
    """One group/version/kind as the reference shows it."""

    definition: ResourceDefinition
    version: Version
    description: str
    fields: tuple[Field, ...]
    rules: tuple[Rule, ...]  # on the object itself
    example: dict[str, Any]
    scale: dict[str, str] = field(default_factory=dict)  # subresources.scale, as declared

    @property
    def group(self) -> str:
        return self.definition.group

    @property
    def kind(self) -> str:
        return self.definition.kind

    @property
    def api_version(self) -> str:
        return f"{self.definition.group}/{self.version.name}"

    @property
    def anchor(self) -> str:
        return f"{self.kind.lower()}.{self.version.name}.{self.group}"

    def field_anchor(self, field_doc: Field) -> str:
        return f"{self.anchor}/{field_doc.path}"

    @property
    def subresources(self) -> tuple[str, ...]:
        return tuple(name for name, on in (("status", self.version.status_subresource),
                                           ("scale", bool(self.scale))) if on)

    @property
    def printer_columns(self) -> tuple[PrinterColumn, ...]:
        return self.version.printer_columns


def document(definition: ResourceDefinition, manifest: dict[str, Any]) -> list[KindDoc]:
    """The served versions of a resource, each as a KindDoc; manifest is the CRD as written
    (for what ResourceDefinition does not keep, such as the scale subresource)."""
    declared = {v.get("name"): v for v in _list(_dict(manifest.get("spec")).get("versions"))
                if isinstance(v, dict)}
    docs = []
    for version in definition.served_versions:
        schema = version.schema
        scale = _dict(_dict(declared.get(version.name, {}).get("subresources")).get("scale"))
        api_version = f"{definition.group}/{version.name}"
        docs.append(KindDoc(
            definition=definition,
            version=version,
            description=str(schema.get("description", "")),
            fields=tuple(_root_fields(schema, api_version, definition.kind)),
            rules=_rules(schema),
            example=example_object(definition, version),
            scale={k: str(v) for k, v in scale.items()},
        ))
    return docs


# -- the field tree

def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _root_fields(schema: dict[str, Any], api_version: str, kind: str) -> Iterator[Field]:
    properties = _dict(schema.get("properties"))
    required = set(_list(schema.get("required")))
    for name, text in _STANDARD.items():
        declared = _dict(properties.get(name))
        description = declared.get("description") or text.format(api_version=api_version,
                                                                  kind=kind)
        yield Field(path=name, depth=0, type=_type(declared) if declared else
                    ("object" if name == "metadata" else "string"),
                    description=str(description), required=name in required,
                    constraints=_constraints(declared), rules=_rules(declared))
        if declared:
            yield from _children(declared, name, 1)
    for name, child in properties.items():
        if name not in _STANDARD and isinstance(child, dict):
            yield from _field(child, name, 0, name in required)


def _field(schema: dict[str, Any], path: str, depth: int, required: bool) -> Iterator[Field]:
    yield Field(
        path=path,
        depth=depth,
        type=_type(schema),
        format=str(schema.get("format", "")),
        required=required,
        default=_json(schema["default"]) if "default" in schema else "",
        enum=tuple(_json(v) for v in _list(schema.get("enum"))),
        constraints=_constraints(schema),
        rules=_rules(schema),
        description=str(schema.get("description", "")),
    )
    yield from _children(schema, path, depth + 1)


def _children(schema: dict[str, Any], path: str, depth: int) -> Iterator[Field]:
    required = set(_list(schema.get("required")))
    for name, child in _dict(schema.get("properties")).items():
        if isinstance(child, dict):
            yield from _field(child, f"{path}.{name}", depth, name in required)
    items = schema.get("items")
    if isinstance(items, dict) and _has_children(items):
        yield from _field(items, f"{path}[*]", depth, False)
    values = schema.get("additionalProperties")
    if isinstance(values, dict) and _has_children(values):
        yield from _field(values, f"{path}.*", depth, False)


def _has_children(schema: dict[str, Any]) -> bool:
    """Whether a list item or map value schema says more than its type (shown in the
    parent's type already)."""
    shown = {"type", "items", "additionalProperties"}
    return bool(set(schema) - shown) or any(
        isinstance(schema.get(k), dict) and _has_children(schema[k])
        for k in ("items", "additionalProperties"))


def _type(schema: dict[str, Any]) -> str:
    """Go-like type of a schema: string, []string, map[string]integer, object,
    int-or-string, any."""
    if schema.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        return "[]" + (_type(items) if isinstance(items, dict) else "any")
    if kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict):
            return "map[string]" + _type(values)
        if values is True:
            return "map[string]any"
        return "object"
    return str(kind) if kind else "any"


def _constraints(schema: dict[str, Any]) -> tuple[str, ...]:
    shown = []
    for key in _CONSTRAINTS:
        if key not in schema:
            continue
        value = schema[key]
        if value is False:
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and value is True:
            continue  # shown with its minimum or maximum
        text = f"{key}: {value if isinstance(value, str) else _json(value)}"
        if key == "minimum" and schema.get("exclusiveMinimum") is True:
            text += " (exclusive)"
        if key == "maximum" and schema.get("exclusiveMaximum") is True:
            text += " (exclusive)"
        shown.append(key if value is True else text)
    return tuple(shown)


def _rules(schema: dict[str, Any]) -> tuple[Rule, ...]:
    return tuple(
        Rule(rule=str(item.get("rule", "")), message=str(item.get("message", "")),
             message_expression=str(item.get("messageExpression", "")),
             reason=str(item.get("reason", "")), field_path=str(item.get("fieldPath", "")),
             optional_old_self=item.get("optionalOldSelf") is True)
        for item in _list(schema.get("x-kubernetes-validations")) if isinstance(item, dict)
    )


# -- the example object

def example_object(definition: ResourceDefinition, version: Version) -> dict[str, Any]:
    """An object of this kind built from the schema's defaults: every field with a default,
    every object that holds one, and a placeholder for each required field without one.
    `status` is left out: the server or a controller writes it."""
    metadata: dict[str, Any] = {"name": f"example-{definition.singular}"}
    if definition.namespaced:
        metadata["namespace"] = "default"
    obj: dict[str, Any] = {"apiVersion": f"{definition.group}/{version.name}",
                           "kind": definition.kind, "metadata": metadata}
    schema = version.schema
    required = set(_list(schema.get("required")))
    for name, child in _dict(schema.get("properties")).items():
        if name in _STANDARD or name == "status" or not isinstance(child, dict):
            continue
        value = _example(child, name in required)
        if value is not None:
            obj[name] = value
    return obj


def _example(schema: dict[str, Any], required: bool) -> Any:
    """The example value of a field, or None to leave it out."""
    if "default" in schema:
        value = json.loads(json.dumps(schema["default"]))
        if isinstance(value, dict):
            _fill(value, schema)
        return value
    if schema.get("type") == "object" or "properties" in schema:
        if not (required or _holds_default(schema)):
            return None
        filled: dict[str, Any] = {}
        _fill(filled, schema)
        return filled
    return _placeholder(schema) if required else None


def _holds_default(schema: dict[str, Any]) -> bool:
    """Whether some field under an object schema has a default."""
    return any(isinstance(child, dict) and ("default" in child or _holds_default(child))
               for child in _dict(schema.get("properties")).values())


def _fill(value: dict[str, Any], schema: dict[str, Any]) -> None:
    """Add the example values of the properties value does not have yet."""
    required = set(_list(schema.get("required")))
    for name, child in _dict(schema.get("properties")).items():
        if name not in value and isinstance(child, dict):
            example = _example(child, name in required)
            if example is not None:
                value[name] = example


def _placeholder(schema: dict[str, Any]) -> Any:
    """A value of the field's type that its schema accepts where that is easy to tell."""
    enum = _list(schema.get("enum"))
    if enum:
        return enum[0]
    kind = schema.get("type")
    if kind in ("integer", "number"):
        minimum = schema.get("minimum", 0)
        exclusive = schema.get("exclusiveMinimum") is True
        return minimum + 1 if exclusive else minimum
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "string":
        return {"date-time": "2006-01-02T15:04:05Z", "date": "2006-01-02"}.get(
            str(schema.get("format")), "example")
    return {}


# -- the summary of a kind

@dataclass(frozen=True)
class Fact:
    """One line of a kind's summary: a label and its values (shown as code when code)."""

    label: str
    values: tuple[str, ...]
    code: bool = True


def facts(doc: KindDoc) -> list[Fact]:
    """What a reader looks up first: names, scope, subresources, versions, hooks."""
    d, v = doc.definition, doc.version
    found = [
        Fact("API version", (doc.api_version,)),
        Fact("Kind", (d.kind,)),
        Fact("List kind", (d.list_kind,)),
        Fact("Plural", (d.plural,)),
        Fact("Singular", (d.singular,)),
        Fact("Scope", ("Namespaced" if d.namespaced else "Cluster",), code=False),
    ]
    if d.short_names:
        found.append(Fact("Short names", d.short_names))
    if d.categories:
        found.append(Fact("Categories", d.categories))
    subresources = []
    if v.status_subresource:
        subresources.append("status (/status updates only .status; other writes keep it)")
    if doc.scale:
        paths = ", ".join(f"{key} {value}" for key, value in doc.scale.items())
        subresources.append(f"scale (autoscaling/v1 Scale: {paths})")
    found.append(Fact("Subresources", tuple(subresources) or ("none",), code=False))
    state = ["served"] + (["storage version"] if v.storage else [])
    if v.deprecated:
        state.append(f"deprecated: {v.deprecation_warning}" if v.deprecation_warning
                     else "deprecated")
    found.append(Fact("Version", (f"{v.name}: {', '.join(state)}",), code=False))
    others = [other.name for other in d.versions if other.name != v.name]
    if others:
        found.append(Fact("Other versions", tuple(others)))
    if v.selectable_fields:
        found.append(Fact("Selectable fields", v.selectable_fields))
    for hook_kind, targets in d.hooks.items():
        found.append(Fact(f"Python {hook_kind} hooks", targets))
    return found
