"""Structural schemas: a version's openAPIV3Schema compiled once, then applied to every write as
apiextensions-apiserver does: prune unknown fields, apply defaults, validate.

Validation follows kube-openapi's validator as kube-apiserver wires it for custom resources
(pkg/apiserver/validation), so the field paths, reasons and messages a client sees are kube's:
`spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"`.
`structural_problems` holds the rules a CRD's schema must follow to be accepted.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import math
import re
from collections.abc import Callable
from datetime import date
from typing import Any

from kext import cel
from kext.api import meta
from kext.api.errors import (
    Cause,
    field_duplicate,
    field_forbidden,
    field_invalid,
    field_not_supported,
    field_required,
    field_too_long,
    field_too_many,
    field_type_invalid,
    go_float,
    go_json,
    go_quote,
)

Object = dict[str, Any]

_KIND_NAMES: dict[type, str] = {
    str: "string", dict: "object", list: "array", bool: "boolean", int: "integer",
    float: "number", type(None): "null",
}


def _kind(value: Any) -> str:
    name = _KIND_NAMES.get(type(value))
    if name is not None:
        return name
    for t, n in _KIND_NAMES.items():
        if isinstance(value, t):
            return n
    return "object"


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# -- formats (the formats CRD schemas validate; others are ignored as kube ignores them)

_UUID = re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
_UUID3 = re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
_UUID4 = re.compile(
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
_UUID5 = re.compile(
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
_BSON = re.compile(r"^[0-9a-fA-F]{24}$")
_HOSTNAME = re.compile(
    r"^([^\W_]((-?[^\W_]{0,62})?)|([^\W_](([^\W_]|-){0,61}[^\W_])?\.)+[^\W\d_]{2,63})$")
_EMAIL = re.compile(r"^(?:[^<>@\s]+@[^<>@\s]+|[^<>]*<[^<>@\s]+@[^<>@\s]+>)$")
_URI = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:[^\s]*|/[^\s]*)$")
_MAC = re.compile(
    r"^(?:[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){7}"
    r"|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){19}"
    r"|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){2}|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){3}"
    r"|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){9})$")
_SSN = re.compile(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$")
_HEXCOLOR = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_RGB_PART = r"\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*"
_RGBCOLOR = re.compile(rf"^rgb\({_RGB_PART},{_RGB_PART},{_RGB_PART}\)$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})?$")
_GO_DURATION = re.compile(r"^[-+]?(?:0|(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)$")
_UNIT_DURATION = re.compile(
    r"^\d+\s*(?:ns|nanoseconds?|us|µs|microseconds?|ms|milliseconds?|s|sec|secs|seconds?|m|"
    r"min|mins|minutes?|h|hr|hrs|hours?|d|day|days|w|wk|wks|weeks?)$")


def _is_ipv4(value: str) -> bool:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return False
    return "." in value and (addr.version == 4 or addr.ipv4_mapped is not None)


def _is_ipv6(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return ":" in value


def _is_cidr(value: str) -> bool:
    if "/" not in value:
        return False
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def _calendar_date(m: re.Match[str] | None) -> bool:
    """Whether a match's first three groups are a real year, month and day."""
    if not m:
        return False
    try:
        date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return False
    return True


def _is_date(value: str) -> bool:
    return _calendar_date(_DATE.match(value))


def _is_datetime(value: str) -> bool:
    m = _DATETIME.match(value)
    if not m or not _calendar_date(m):
        return False
    return int(m.group(4)) < 24 and int(m.group(5)) < 60 and int(m.group(6)) < 61


def _is_byte(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        return False
    return True


def _isbn10(value: str) -> bool:
    digits = re.sub(r"[\s-]", "", value)
    if not re.fullmatch(r"\d{9}[\dX]", digits):
        return False
    total = sum((10 - i) * (10 if c == "X" else int(c)) for i, c in enumerate(digits))
    return total % 11 == 0


def _isbn13(value: str) -> bool:
    digits = re.sub(r"[\s-]", "", value)
    if not re.fullmatch(r"\d{13}", digits):
        return False
    total = sum((3 if i % 2 else 1) * int(c) for i, c in enumerate(digits[:12]))
    return (10 - total % 10) % 10 == int(digits[12])


_CREDITCARD = re.compile(
    r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|"
    r"3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11})$")


def _is_creditcard(value: str) -> bool:
    digits = re.sub(r"[^0-9]", "", value)
    if not _CREDITCARD.match(digits):
        return False
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


FORMATS: dict[str, Callable[[str], bool]] = {
    "bsonobjectid": lambda v: bool(_BSON.match(v)),
    "uri": lambda v: bool(_URI.match(v)),
    "email": lambda v: bool(_EMAIL.match(v)),
    "hostname": lambda v: len(v) <= 255 and bool(_HOSTNAME.match(v)),
    "ipv4": _is_ipv4,
    "ipv6": _is_ipv6,
    "cidr": _is_cidr,
    "mac": lambda v: bool(_MAC.match(v)),
    "uuid": lambda v: bool(_UUID.match(v)),
    "uuid3": lambda v: bool(_UUID3.match(v)),
    "uuid4": lambda v: bool(_UUID4.match(v)),
    "uuid5": lambda v: bool(_UUID5.match(v)),
    "isbn": lambda v: _isbn10(v) or _isbn13(v),
    "isbn10": _isbn10,
    "isbn13": _isbn13,
    "creditcard": _is_creditcard,
    "ssn": lambda v: bool(_SSN.match(v)),
    "hexcolor": lambda v: bool(_HEXCOLOR.match(v)),
    "rgbcolor": lambda v: bool(_RGBCOLOR.match(v)),
    "byte": _is_byte,
    "password": lambda v: True,
    "date": _is_date,
    "duration": lambda v: bool(_GO_DURATION.match(v) or _UNIT_DURATION.match(v)),
    "datetime": _is_datetime,
}


# -- compiled nodes


_NO_DEFAULT: Any = object()


def _enum_key(value: Any) -> tuple[str, Any]:
    # Go compares after converting to the enum value's type: 1 and 1.0 are the same number.
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    if isinstance(value, str):
        return ("string", value)
    return ("json", go_json(value))


class Node:
    """One schema node, with everything a write needs precomputed."""

    __slots__ = (
        "additional", "additional_allows", "all_of", "any_of", "cel_inside", "cel_self",
        "default", "defaulted", "embedded", "enum", "enum_keys", "enum_shown",
        "exclusive_maximum", "exclusive_minimum", "format", "format_check", "has_additional",
        "has_default", "int_or_string", "items", "list_map_keys", "list_type", "map_type",
        "max_items", "max_length",
        "max_properties", "maximum", "min_items", "min_length", "min_properties", "minimum",
        "multiple_of", "not_", "nullable", "one_of", "pattern", "pattern_source", "preserve",
        "properties", "required", "rules", "type", "type_label", "unique_items",
    )

    def __init__(self, d: object) -> None:
        s: dict[str, Any] = d if isinstance(d, dict) else {}
        t = s.get("type")
        self.type: str = t if isinstance(t, str) else ""
        self.int_or_string = s.get("x-kubernetes-int-or-string") is True
        self.type_label = "integer,string" if self.int_or_string else self.type
        self.nullable = s.get("nullable") is True
        self.preserve = s.get("x-kubernetes-preserve-unknown-fields") is True
        self.embedded = s.get("x-kubernetes-embedded-resource") is True
        fmt = s.get("format")
        check = FORMATS.get(fmt.replace("-", "")) if isinstance(fmt, str) else None
        self.format: str = fmt if check is not None and isinstance(fmt, str) else ""
        self.format_check = check

        props = s.get("properties")
        self.properties: dict[str, Node] | None = (
            {k: Node(v) for k, v in props.items()} if isinstance(props, dict) and props else None
        )
        additional = s.get("additionalProperties")
        # additionalProperties present (a schema, true or false): extra keys are not pruned.
        self.has_additional = additional is not None
        self.additional_allows = additional is not False
        self.additional: Node | None = Node(additional) if isinstance(additional, dict) else None
        items = s.get("items")
        self.items: Node | None = Node(items) if isinstance(items, dict) else None
        required = s.get("required")
        self.required: tuple[str, ...] = tuple(
            r for r in required if isinstance(r, str)) if isinstance(required, list) else ()

        enum = s.get("enum")
        self.enum: list[Any] | None = enum if isinstance(enum, list) and enum else None
        self.enum_keys = frozenset(_enum_key(v) for v in self.enum) if self.enum else frozenset()
        self.enum_shown = [v if isinstance(v, str) else go_json(v) for v in self.enum or ()]

        self.minimum = _number(s.get("minimum"))
        self.maximum = _number(s.get("maximum"))
        self.exclusive_minimum = s.get("exclusiveMinimum") is True
        self.exclusive_maximum = s.get("exclusiveMaximum") is True
        self.multiple_of = _number(s.get("multipleOf"))
        self.min_length = _count(s.get("minLength"))
        self.max_length = _count(s.get("maxLength"))
        pattern = s.get("pattern")
        self.pattern_source = pattern if isinstance(pattern, str) else ""
        try:
            self.pattern = re.compile(pattern) if isinstance(pattern, str) and pattern else None
        except re.error:
            self.pattern = None
        self.min_items = _count(s.get("minItems"))
        self.max_items = _count(s.get("maxItems"))
        self.unique_items = s.get("uniqueItems") is True
        self.min_properties = _count(s.get("minProperties"))
        self.max_properties = _count(s.get("maxProperties"))

        self.all_of = _branches(s.get("allOf"))
        self.any_of = _branches(s.get("anyOf"))
        self.one_of = _branches(s.get("oneOf"))
        self.not_: Node | None = Node(s["not"]) if isinstance(s.get("not"), dict) else None

        default = s.get("default")
        self.default: Any = _NO_DEFAULT if default is None else default
        self.has_default = default is not None
        # "" is atomic for a list and granular for a map, their defaults.
        list_type = s.get("x-kubernetes-list-type")
        self.list_type: str = list_type if list_type in ("set", "map") else ""
        keys = s.get("x-kubernetes-list-map-keys")
        self.list_map_keys: tuple[str, ...] = tuple(keys) if isinstance(keys, list) else ()
        map_type = s.get("x-kubernetes-map-type")
        self.map_type: str = map_type if map_type == "atomic" else ""
        # x-kubernetes-validations, compiled by Schema once the whole tree is known.
        self.rules: tuple[_Rule, ...] = ()
        self.cel_self: Callable[[Any], Any] | None = None
        self.cel_inside = False
        # Properties that carry a default, looked up on every defaulting pass.
        self.defaulted: tuple[tuple[str, Node], ...] = tuple(
            (k, p) for k, p in (self.properties or {}).items() if p.default is not _NO_DEFAULT
        )


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _branches(value: Any) -> tuple[Node, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(Node(v) for v in value if isinstance(v, dict))


def _copy(value: Any) -> Any:
    return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


# -- the compiled schema


class Schema:
    """A version's openAPIV3Schema, compiled once; `prune`, `default` and `validate` run on
    every write of that version. Objects are plain JSON dicts, changed in place."""

    def __init__(self, schema: object) -> None:
        self.source = schema if isinstance(schema, dict) else {}
        self.root = Node(self.source)
        # The resource root always behaves as an embedded resource (apiVersion, kind, metadata).
        self.root.embedded = True
        # x-kubernetes-validations: every rule compiled now; what did not compile is kept
        # as CRD problems (`rule_problems`), with paths below the schema.
        self._rule_problems: list[Cause] = []
        self.cel_rules, self._rules_within_budget = _compile_rules(
            self.root, self.source, self._rule_problems)

    def rule_problems(self, path: str) -> list[Cause]:
        """Why kube-apiserver would refuse this schema's validation rules (they do not
        compile, cost too much, use oldSelf where no old value can be found...), at `path`
        (the openAPIV3Schema's field path)."""
        return [Cause(c.reason, c.message.replace(_SCHEMA_PATH, path), path + c.field)
                for c in self._rule_problems]

    def prune(self, obj: Object) -> list[str]:
        """Drop every field the schema does not declare (unless under
        x-kubernetes-preserve-unknown-fields) and every non-ObjectMeta field of `metadata`;
        returns the dropped paths, sorted, in kube's form (`spec.foo`, `spec.items[0].bar`,
        `metadata.foo`), as kube-apiserver reports them: `unknown field "spec.foo"`."""
        unknown: list[str] = []
        _prune(obj, self.root, "", unknown)
        unknown.sort()
        return unknown

    def default(self, obj: Object) -> None:
        """Apply defaults in place, as apiextensions' decoder does: drop nulls of non-nullable
        fields that have no default, set defaults of absent (or null non-nullable) fields,
        also inside defaulted values and inside objects present in the input."""
        _default(obj, self.root)

    def validate(self, obj: Object, old: Object | None = None) -> list[Cause]:
        """Every schema violation (metadata's ObjectMeta rules are meta.py's), each a Cause with
        kube's reason, field path and message; embedded-resource and list-type
        (set/map uniqueness) violations come next, as in kube-apiserver, then the
        x-kubernetes-validations rules that failed.

        `old` is the stored object on update: transition rules (`oldSelf`) run against it, and
        validation ratchets as kube 1.33 does: a violation in a part of the object that the
        update left unchanged is not reported."""
        errs: list[Cause] = []
        extra: list[Cause] = []
        lists: list[Cause] = []
        _validate(self.root, obj, "", errs, extra, lists, True)
        errs.extend(extra)
        errs.extend(lists)
        if old is not None and errs:
            errs = [c for c in errs if not _ratchets(self.root, c.field, obj, old)]
        if self.root.cel_inside:
            # When every rule together cannot cost more than a request may spend (the
            # estimates are upper bounds), there is nothing to count.
            run = _RuleRun(counted=not self._rules_within_budget)
            root_correlation = _Correlation(obj, old) if old is not None else None
            _validate_rules(self.root, obj, old, "", run, root_correlation, True)
            errs.extend(run.errs)
        return errs


# -- x-kubernetes-validations: CEL rules (apiextensions-apiserver pkg/apiserver/schema/cel)

# Where the schema's own path goes in a problem's message (known only to rule_problems).
_SCHEMA_PATH = "\x00schema\x00"
_REASONS = ("FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid",
            "FieldValueRequired")
_MAX_MESSAGE_BYTES = 5 * 1024  # MaxEvaluatedMessageExpressionSizeBytes
_CHEAP_RULE = 100  # at most this estimated cost: charged as estimated, not measured


class _Rule:
    """One compiled `x-kubernetes-validations` entry."""

    __slots__ = ("cost", "env", "field_path", "message", "message_program",
                 "optional_old_self", "program", "reason", "rule", "uses_old_self")

    def __init__(self, env: cel.Environment, spec: dict[str, Any], program: cel.Program,
                 message_program: cel.Program | None, field_path: str, cost: int) -> None:
        self.env = env
        self.rule = str(spec.get("rule", "")).strip()
        self.message = str(spec.get("message") or "").strip()
        reason = spec.get("reason")
        self.reason = reason if reason in _REASONS else "FieldValueInvalid"
        self.field_path = field_path
        self.optional_old_self = spec.get("optionalOldSelf") is True
        self.program = program
        self.message_program = message_program
        self.uses_old_self = program.uses_old_self
        self.cost = cost

    @property
    def error_string(self) -> str:
        """ruleErrorString: the message, or the rule when there is none."""
        return self.message or self.rule


def _compile_rules(root: Node, source: dict[str, Any], problems: list[Cause]
                   ) -> tuple[int, bool]:
    """Compile every rule of the tree into its node; returns how many compiled, and whether
    all of them together fit one request's cost budget."""
    pending: list[_Pending] = []
    _find_rules(root, source, "", [], "", pending)
    if not pending:
        return 0, True
    env = cel.Environment()
    types = [env.declare(raw, root=resource) for _, raw, _, _, _, resource in pending]
    env.seal()
    total = 0
    expensive: list[tuple[str, int]] = []
    compiled = 0
    for (node, raw, at, ancestors, uncorrelatable, resource), self_type in zip(
            pending, types, strict=True):
        rules: list[_Rule] = []
        times = cel.cardinality(ancestors)
        sizer = cel.schema_sizer(raw)
        for i, spec in enumerate(raw.get("x-kubernetes-validations") or ()):
            rule_at = f"{at}.x-kubernetes-validations[{i}]"
            before = len(problems)
            rule = _compile_rule(env, spec, self_type, raw, rule_at, problems, sizer)
            if rule is None:
                continue
            cost = rule.cost * times
            if rule.message_program is not None:
                message_cost = cel.estimated_cost(rule.message_program, sizer) * times
                total += message_cost
                if message_cost > cel.STATIC_ESTIMATED_COST_LIMIT:
                    problems.append(field_forbidden(f"{rule_at}.messageExpression", _cost_message(
                        "estimated messageExpression cost", message_cost,
                        cel.STATIC_ESTIMATED_COST_LIMIT)))
            total += cost
            if cost >= cel.STATIC_ESTIMATED_CRD_COST_LIMIT // 100:
                expensive.append((f"{rule_at}.rule", cost))
            if cost > cel.STATIC_ESTIMATED_COST_LIMIT:
                problems.append(field_forbidden(f"{rule_at}.rule", _cost_message(
                    "estimated rule cost", cost, cel.STATIC_ESTIMATED_COST_LIMIT)))
            if rule.uses_old_self and uncorrelatable:
                problems.append(field_invalid(
                    f"{rule_at}.rule", rule.rule, "oldSelf cannot be used on the uncorrelatable "
                    f"portion of the schema within {_SCHEMA_PATH}{uncorrelatable}"))
            if len(problems) == before:
                rules.append(rule)
        node.rules = tuple(rules)
        node.cel_self = cel.converter(raw, embedded=resource)
        compiled += len(rules)
    within_budget = total <= cel.RUNTIME_COST_BUDGET and all(
        r.cost <= cel.PER_CALL_LIMIT for node, *_ in pending for r in node.rules)
    if total > cel.STATIC_ESTIMATED_CRD_COST_LIMIT:
        for path, _ in sorted(expensive, key=lambda e: -e[1]):
            problems.append(field_forbidden(
                path, "contributed to estimated rule cost total exceeding cost limit for entire "
                "OpenAPIv3 schema"))
        problems.append(field_forbidden("", _cost_message(
            "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
            total, cel.STATIC_ESTIMATED_CRD_COST_LIMIT)))
    _mark_inside(root)
    return compiled, within_budget


# A node with rules: the node, its schema, its path in the CRD, the lists and maps above it,
# the first list above it whose items cannot be matched with the old object's, and whether
# `self` is a resource (the root, or an embedded resource).
_Pending = tuple[Node, dict[str, Any], str, list[dict[str, Any]], str, bool]


def _find_rules(node: Node, raw: dict[str, Any], at: str, ancestors: list[dict[str, Any]],
                uncorrelatable: str, out: list[_Pending]) -> None:
    rules = raw.get("x-kubernetes-validations")
    resource = at == "" or node.embedded
    if isinstance(rules, list) and rules:
        out.append((node, raw, at, ancestors, uncorrelatable, resource))
    props = raw.get("properties")
    if node.properties and isinstance(props, dict):
        for k, child in node.properties.items():
            if isinstance(props.get(k), dict):
                _find_rules(child, props[k], f"{at}.properties[{k}]", ancestors,
                            uncorrelatable, out)
    additional = raw.get("additionalProperties")
    if node.additional is not None and isinstance(additional, dict):
        _find_rules(node.additional, additional, f"{at}.additionalProperties",
                    [*ancestors, raw], uncorrelatable, out)
    items = raw.get("items")
    if node.items is not None and isinstance(items, dict):
        below = f"{at}.items"
        if not uncorrelatable and node.list_type != "map":
            uncorrelatable = below
        _find_rules(node.items, items, below, [*ancestors, raw], uncorrelatable, out)
    branches = [b for b in raw.get("allOf") or () if isinstance(b, dict)]
    for i, (branch, raw_branch) in enumerate(zip(node.all_of, branches, strict=False)):
        rules = raw_branch.get("x-kubernetes-validations")
        if isinstance(rules, list) and rules:
            # A branch's rules see the node's value, typed by the node's schema.
            merged = dict(raw, **{"x-kubernetes-validations": rules})
            merged.pop("allOf", None)
            out.append((branch, merged, f"{at}.allOf[{i}]", ancestors, uncorrelatable,
                        resource))


def _mark_inside(node: Node) -> bool:
    inside = bool(node.rules)
    for child in (node.properties or {}).values():
        inside = _mark_inside(child) or inside
    for below in (node.additional, node.items):
        if below is not None:
            inside = _mark_inside(below) or inside
    for branch in node.all_of:
        inside = _mark_inside(branch) or inside
    node.cel_inside = inside
    return inside


def _compile_rule(env: cel.Environment, spec: Any, self_type: str, raw: dict[str, Any],
                  at: str, problems: list[Cause], sizer: cel.Sizer) -> _Rule | None:
    if not isinstance(spec, dict):
        return None
    rule = str(spec.get("rule") or "").strip()
    if not rule:
        return None
    optional_old_self = spec.get("optionalOldSelf") is True
    try:
        program = env.compile(rule, self_type, optional_old_self=optional_old_self)
    except cel.CompileError as exc:
        problems.append(Cause("FieldValueInvalid", f"Invalid value: {_go_rule(spec)}: {exc}",
                              f"{at}.rule"))
        return None
    if not program.uses_old_self and "optionalOldSelf" in spec:
        problems.append(field_invalid(f"{at}.optionalOldSelf", optional_old_self,
                                      "may not be set if oldSelf is not used in rule"))
    message_program = None
    expression = str(spec.get("messageExpression") or "").strip()
    if expression:
        try:
            message_program = env.compile(expression, self_type, result="string",
                                          optional_old_self=optional_old_self)
        except cel.CompileError as exc:
            detail = str(exc)
            detail = ("messageExpression " + detail if detail.startswith("compilation")
                      else "messageExpression must evaluate to a string")
            problems.append(Cause("FieldValueInvalid", f"Invalid value: {_go_rule(spec)}: "
                                  f"{detail}", f"{at}.messageExpression"))
            return None
    field_path = ""
    if spec.get("fieldPath"):
        found = _rule_field_path(str(spec["fieldPath"]).strip(), raw)
        if found is None:
            problems.append(field_invalid(f"{at}.fieldPath", spec["fieldPath"],
                                          "must be a valid path"))
            return None
        field_path = found
    return _Rule(env, spec, program, message_program, field_path,
                 cel.estimated_cost(program, sizer))


def _go_rule(spec: dict[str, Any]) -> str:
    """A ValidationRule as Go's %#v prints it, as kube quotes it in compile errors."""
    reason = spec.get("reason")
    optional = spec.get("optionalOldSelf")
    return (
        f"apiextensions.ValidationRule{{Rule:{go_quote(str(spec.get('rule', '')))}, "
        f"Message:{go_quote(str(spec.get('message') or ''))}, "
        f"MessageExpression:{go_quote(str(spec.get('messageExpression') or ''))}, "
        "Reason:(*apiextensions.FieldValueErrorReason)"
        + (f"({go_quote(str(reason))})" if reason else "(nil)")
        + f", FieldPath:{go_quote(str(spec.get('fieldPath') or ''))}, OptionalOldSelf:(*bool)"
        + (f"({'true' if optional else 'false'})" if optional is not None else "(nil)") + "}")


def _cost_message(name: str, cost: int, limit: int) -> str:
    factor = cost / limit
    if factor > 100:
        shown = "more than 100x"
    elif factor < 1.5:
        shown = f"{factor:f}x"
    else:
        shown = f"{factor:.1f}x"
    return (f"{name} exceeds budget by factor of {shown} (try simplifying the rule, or adding "
            "maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)")


_PATH_TOKEN = re.compile(r"\.([^.\[\]]+)|\['((?:[^'\\]|\\.)*)'\]")


def _rule_field_path(field_path: str, raw: dict[str, Any]) -> str | None:
    """A rule's fieldPath (`.spec.x`, `['a.b']`) as a field path suffix (`.spec.x`, `[key]`
    for a map key), or None when it does not name a field of the schema (ValidFieldPath)."""
    out = []
    node: Any = raw
    pos = 0
    while pos < len(field_path):
        m = _PATH_TOKEN.match(field_path, pos)
        if m is None or not isinstance(node, dict):
            return None
        name = m.group(1) if m.group(1) is not None else re.sub(r"\\(.)", r"\1", m.group(2))
        props = node.get("properties")
        if isinstance(props, dict) and props:
            if name not in props:
                return None
            node = props[name]
            out.append(f".{name}")
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
            out.append(f"[{name}]")
        else:
            return None
        pos = m.end()
    return "".join(out)


def rule_problems_of_shape(rules: Any, path: str) -> list[Cause]:
    """The checks kube makes of each rule before compiling it (validation.go)."""
    errs: list[Cause] = []
    for i, rule in enumerate(rules):
        at = f"{path}.x-kubernetes-validations[{i}]"
        text = str(rule.get("rule") or "").strip()
        message = rule.get("message")
        trimmed = str(message or "").strip()
        if not text:
            errs.append(field_required(f"{at}.rule", "rule is not specified"))
        elif message and not trimmed:
            errs.append(field_invalid(f"{at}.message", message, "must be non-empty if specified"))
        elif "\n" in trimmed or "\r" in trimmed:
            errs.append(field_invalid(f"{at}.message", message, "must not contain line breaks"))
        elif ("\n" in text or "\r" in text) and not trimmed:
            errs.append(field_required(f"{at}.message",
                                       "message must be specified if rule contains line breaks"))
        expression = rule.get("messageExpression")
        if expression is not None and expression != "" and not str(expression).strip():
            errs.append(field_required(f"{at}.messageExpression",
                                       "messageExpression must be non-empty if specified"))
        reason = rule.get("reason")
        if reason is not None and reason not in _REASONS:
            errs.append(field_not_supported(f"{at}.reason", reason, _REASONS))
        field_path = rule.get("fieldPath")
        if field_path is not None and field_path != "":
            if not str(field_path).strip():
                errs.append(field_invalid(f"{at}.fieldPath", field_path,
                                          "must be non-empty if specified"))
            elif "\n" in str(field_path):
                errs.append(field_invalid(f"{at}.fieldPath", field_path,
                                          "must not contain line breaks"))
    return errs


# -- evaluating rules


class _Correlation:
    """A value and the old value it corresponds to (kube's CorrelatedObject); whether they
    are equal is worked out once, when a ratcheting decision needs it."""

    __slots__ = ("_equal", "new", "old")

    def __init__(self, new: Any, old: Any) -> None:
        self.new = new
        self.old = old
        self._equal: bool | None = None

    def equal(self) -> bool:
        if self._equal is None:
            self._equal = _deep_equal(self.new, self.old)
        return self._equal


def _deep_equal(a: Any, b: Any) -> bool:
    # Go's reflect.DeepEqual on decoded JSON: 1 and 1.0 differ, key order does not matter.
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(_deep_equal(v, b[k]) for k, v in a.items())
    if type(a) is list:
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class _RuleRun:
    """One request's evaluation of the rules: the errors so far and the cost budget left."""

    __slots__ = ("budget", "counted", "errs", "stopped")

    def __init__(self, counted: bool = True) -> None:
        self.counted = counted
        self.budget = cel.RUNTIME_COST_BUDGET
        self.errs: list[Cause] = []
        self.stopped = False


def _validate_rules(s: Node, value: Any, old: Any, path: str, run: _RuleRun,
                    correlation: _Correlation | None, root: bool = False) -> None:
    if value is None or run.stopped or not s.cel_inside:
        return
    if s.rules:
        _run_rules(s, value, old, path, run, correlation, root)
        if run.stopped:
            return
    for branch in s.all_of:
        if branch.rules:
            # allOf errors are not ratcheted (kube passes no correlation to them).
            _run_rules(branch, value, old, path, run, None, root, cel_self=s.cel_self or
                       branch.cel_self)
            if run.stopped:
                return
    if type(value) is dict:
        props = s.properties
        if props is not None:
            old_map = old if type(old) is dict else None
            for k, child in props.items():
                if k in value and child.cel_inside:
                    child_old = old_map.get(k) if old_map is not None else None
                    child_corr = correlation
                    if root and k in ("apiVersion", "kind"):
                        child_corr = None
                    elif old_map is not None and k in old_map and correlation is not None:
                        child_corr = _Correlation(value[k], old_map[k])
                    _validate_rules(child, value[k], child_old, _child(path, k), run,
                                    child_corr)
                    if run.stopped:
                        return
        additional = s.additional
        if additional is not None and additional.cel_inside:
            old_map = old if type(old) is dict else None
            for k, v in value.items():
                if props is not None and k in props:
                    continue
                child_old = old_map.get(k) if old_map is not None else None
                child_corr = correlation
                if old_map is not None and k in old_map and correlation is not None:
                    child_corr = _Correlation(v, old_map[k])
                _validate_rules(additional, v, child_old, f"{path}[{k}]", run, child_corr)
                if run.stopped:
                    return
    elif type(value) is list and s.items is not None and s.items.cel_inside:
        old_items = _correlated_items(s, value, old)
        for i, v in enumerate(value):
            child_old = old_items[i] if old_items is not None else None
            child_corr = correlation
            if child_old is not None and correlation is not None:
                child_corr = _Correlation(v, child_old)
            _validate_rules(s.items, v, child_old, f"{path}[{i}]", run, child_corr)
            if run.stopped:
                return


def _correlated_items(s: Node, value: list[Any], old: Any) -> list[Any] | None:
    """The old item each new item corresponds to: by key in a list-type map, else none."""
    if s.list_type != "map" or type(old) is not list or not s.list_map_keys:
        return None
    keys = s.list_map_keys

    def key(item: Any) -> Any:
        return tuple(go_json(item.get(k)) for k in keys) if type(item) is dict else None

    by_key = {key(item): item for item in old}
    return [by_key.get(key(item)) for item in value]


def _run_rules(s: Node, value: Any, old: Any, path: str, run: _RuleRun,
               correlation: _Correlation | None, root: bool,
               cel_self: Callable[[Any], Any] | None = None) -> None:
    at = path or "<nil>"
    shown_type = "" if s.int_or_string else s.type
    convert = cel_self or s.cel_self
    if run.budget <= 0:
        run.errs.append(field_invalid(at, shown_type, _OUT_OF_BUDGET))
        run.stopped = True
        return
    activation = None
    for rule in s.rules:
        if rule.uses_old_self and old is None and not rule.optional_old_self:
            continue  # transition rules need an old value
        if activation is None:
            activation = _activation(rule.env, value, old, convert)
        if not run.counted:
            cost = 0
        elif rule.cost <= _CHEAP_RULE:
            cost = rule.cost
        else:
            cost = cel.estimated_cost(rule.program, cel.value_sizer(value))
        if cost > cel.PER_CALL_LIMIT:
            run.errs.append(field_invalid(at, shown_type, (
                "'operation cancelled: actual cost limit exceeded': no further validation rules "
                f"will be run due to call cost exceeds limit for rule: {rule.error_string}")))
            run.stopped = True
            return
        if cost > run.budget:
            run.errs.append(field_invalid(at, shown_type, _OUT_OF_BUDGET))
            run.stopped = True
            return
        run.budget -= cost
        try:
            result = rule.program.evaluate(activation)
        except cel.EvaluationError as exc:
            if str(exc).startswith("no such overload"):
                detail = (f"'{exc}': call arguments did not match a supported operator, "
                          f"function or macro signature for rule: {rule.error_string}")
            else:
                detail = f"{exc} evaluating rule: {rule.error_string}"
            run.errs.append(field_invalid(at, shown_type, detail))
            continue
        if result is True:
            continue
        if not rule.uses_old_self and correlation is not None and correlation.equal():
            continue  # ratcheting: the value is unchanged, and already broke this rule
        detail = _rule_message(rule, activation, run)
        if run.stopped:
            return
        field_at = path + rule.field_path if rule.field_path else at
        if field_at.startswith("."):
            field_at = field_at[1:]
        run.errs.append(_rule_error(rule.reason, field_at, value, detail,
                                    s.type in ("object", "array")))


_OUT_OF_BUDGET = ("validation failed due to running out of cost budget, no further validation "
                  "rules will be run")


def _activation(env: cel.Environment, value: Any, old: Any,
                convert: Callable[[Any], Any] | None) -> Any:
    if convert is not None:
        value = convert(value)
        old = convert(old) if old is not None else None
    return env.activation(value, old, old is not None)


def _rule_message(rule: _Rule, activation: Any, run: _RuleRun) -> str:
    default = rule.message or f"failed rule: {rule.rule}"
    program = rule.message_program
    if program is None:
        return default
    if program.uses_old_self and not rule.uses_old_self:
        return default
    cost = min(cel.estimated_cost(program, lambda _: 0), cel.PER_CALL_LIMIT) \
        if run.counted else 0
    if cost > run.budget:
        run.errs.append(field_invalid("", "", "messageExpression evaluation failed due to "
                                      "running out of cost budget, no further validation rules "
                                      "will be run"))
        run.stopped = True
        return default
    run.budget -= cost
    try:
        message = program.evaluate(activation)
    except cel.EvaluationError:
        return default
    text = message.strip() if isinstance(message, str) else ""
    if not text or "\n" in text or len(text.encode()) > _MAX_MESSAGE_BYTES:
        return default
    return text


def _rule_error(reason: str, path: str, value: Any, detail: str, omit_value: bool) -> Cause:
    if reason == "FieldValueForbidden":
        return field_forbidden(path, detail)
    if reason == "FieldValueRequired":
        return field_required(path, detail)
    if reason == "FieldValueDuplicate":
        if omit_value:
            return Cause("FieldValueDuplicate", "Duplicate value", path)
        return field_duplicate(path, value)
    if omit_value:
        return Cause("FieldValueInvalid", f"Invalid value: {detail}", path)
    return field_invalid(path, value, detail)


# -- ratcheting of schema errors (apiextensions-apiserver pkg/apiserver/validation/ratcheting)

_SEGMENT = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]")


def _ratchets(root: Node, field: str, new: Any, old: Any) -> bool:
    """Whether a schema error at `field` is forgiven on update: the deepest part of the
    object above it that can be matched with the old object is unchanged."""
    if field == "<nil>":
        return False
    node: Node | None = root
    pair = _Correlation(new, old)
    segments = [m.group(1) if m.group(1) is not None else m.group(2)
                for m in _SEGMENT.finditer(field)]
    for i, segment in enumerate(segments):
        if node is None:
            break
        a, b = pair.new, pair.old
        if i == 0 and segment in ("apiVersion", "kind"):
            return False
        if type(a) is dict and type(b) is dict:
            if segment not in a or segment not in b:
                break
            sub = (node.properties or {}).get(segment) or node.additional
            if sub is None:
                break
            node, pair = sub, _Correlation(a[segment], b[segment])
        elif type(a) is list and segment.isdigit():
            items = _correlated_items(node, a, b)
            index = int(segment)
            if items is None or index >= len(items) or items[index] is None:
                break
            node, pair = node.items, _Correlation(a[index], items[index])
        else:
            break
    return pair.equal()

# -- prune


def _prune(x: Any, s: Node | None, path: str, unknown: list[str]) -> None:
    if s is not None and s.preserve:
        _skip_prune(x, s, path, unknown)
        return
    if type(x) is dict:
        if s is None:
            unknown.extend(_child(path, k) for k in x)
            x.clear()
            return
        props = s.properties
        for k in list(x):
            v = x[k]
            if s.embedded:
                if (k == "apiVersion" or k == "kind") and type(v) is str:
                    continue
                if k == "metadata" and type(v) is dict:
                    meta.prune_object_meta(v, _child(path, k), unknown)
                    continue
            prop = props.get(k) if props is not None else None
            if prop is not None:
                if type(v) is dict or type(v) is list:
                    _prune(v, prop, _child(path, k), unknown)
            elif s.has_additional:
                if type(v) is dict or type(v) is list:
                    _prune(v, s.additional, _child(path, k), unknown)
            else:
                unknown.append(_child(path, k))
                del x[k]
    elif type(x) is list:
        items = s.items if s is not None else None
        for i, v in enumerate(x):
            if type(v) is dict or type(v) is list:
                _prune(v, items, f"{path}[{i}]", unknown)


def _skip_prune(x: Any, s: Node | None, path: str, unknown: list[str]) -> None:
    if s is None:
        return
    if type(x) is dict:
        props = s.properties
        for k, v in x.items():
            if s.embedded and k in ("apiVersion", "kind", "metadata"):
                if k == "metadata" and type(v) is dict:
                    meta.prune_object_meta(v, _child(path, k), unknown)
                continue
            prop = props.get(k) if props is not None else None
            if prop is not None:
                _prune(v, prop, _child(path, k), unknown)
            elif s.additional is not None:
                _prune(v, s.additional, _child(path, k), unknown)
    elif type(x) is list:
        for i, v in enumerate(x):
            _skip_prune(v, s.items, f"{path}[{i}]", unknown)


# -- default


def _default(x: Any, s: Node) -> None:
    if type(x) is dict:
        props = s.properties
        for k, prop in s.defaulted:
            v = x.get(k, _NO_DEFAULT)
            if v is _NO_DEFAULT or (v is None and not prop.nullable):
                x[k] = _copy(prop.default)
        additional = s.additional
        nulls = [k for k, v in x.items() if v is None]
        for k in nulls:
            node = props.get(k) if props is not None else None
            if node is None:
                node = additional
            if node is not None and not node.nullable:
                if node.default is _NO_DEFAULT:
                    del x[k]
                else:
                    x[k] = _copy(node.default)
        for k, v in x.items():
            if type(v) is dict or type(v) is list:
                node = props.get(k) if props is not None else None
                if node is None:
                    node = additional
                if node is not None:
                    _default(v, node)
    elif type(x) is list:
        items = s.items
        if items is None:
            return
        for i, v in enumerate(x):
            if v is None and not items.nullable and items.default is not _NO_DEFAULT:
                x[i] = v = _copy(items.default)
            if type(v) is dict or type(v) is list:
                _default(v, items)


# -- validate


def _type_error(path: str, label: str, value: str) -> Cause:
    return field_type_invalid(
        path, value, f"{path} in body must be of type {label}: {go_quote(value)}",
    )


def _type_ok(s: Node, value: Any, kind: str) -> bool:
    if s.int_or_string:
        return kind in ("integer", "string") or (kind == "number" and value.is_integer())
    t = s.type
    if not t or t == kind:
        return True
    if t == "integer":
        return kind == "number" and value.is_integer()
    return t == "number" and kind == "integer"


def _validate(s: Node, value: Any, path: str, errs: list[Cause], extra: list[Cause] | None,
              lists: list[Cause] | None, root: bool = False) -> None:
    kind = _kind(value)
    if kind == "null":
        if s.type_label and not s.nullable:
            errs.append(_type_error(path, s.type_label, "null"))
        if s.enum is not None and ("null", None) not in s.enum_keys:
            errs.append(field_not_supported(path, None, s.enum_shown))
        return

    # type
    if s.type_label:
        if s.format and kind != "string" and kind != "array" and not _type_ok(s, value, kind):
            go_format = "int64" if kind == "integer" else "double" if kind == "number" else ""
            errs.append(_type_error(path, s.format, go_format))
        elif not (s.format and kind == "string" and s.type not in ("integer", "number")) \
                and not _type_ok(s, value, kind):
            errs.append(_type_error(path, s.type_label, kind))

    # allOf / anyOf / oneOf / not
    if s.all_of or s.any_of or s.one_of or s.not_ is not None:
        _validate_composition(s, value, path, errs)

    if kind == "string":
        if s.max_length is not None and len(value) > s.max_length:
            errs.append(field_too_long(path, s.max_length))
        elif s.min_length is not None and len(value) < s.min_length:
            errs.append(field_invalid(
                path, value, f"{path} in body should be at least {s.min_length} chars long"))
        elif s.pattern is not None and s.pattern.search(value) is None:
            errs.append(field_invalid(
                path, value, f"{path} in body should match '{s.pattern_source}'"))
        if s.format_check is not None and not s.format_check(value):
            errs.append(_type_error(path, s.format, value))
    elif kind == "integer" or kind == "number":
        _validate_number(s, value, kind == "integer", path, errs)
    elif kind == "array":
        _validate_array(s, value, path, errs, extra, lists)

    if s.enum is not None and _enum_key(value) not in s.enum_keys:
        errs.append(field_not_supported(path, value, s.enum_shown))

    if kind == "object":
        _validate_object(s, value, path, errs, extra, lists, root)


def _validate_number(s: Node, value: int | float, is_int: bool, path: str,
                     errs: list[Cause]) -> None:
    # kube-openapi compares integers against int64(bound) and prints the bound that way.
    if s.multiple_of is not None and s.multiple_of > 0:
        factor = s.multiple_of
        if is_int and float(factor).is_integer():
            if value % int(factor):
                errs.append(field_invalid(
                    path, value, f"{path} in body should be a multiple of {int(factor)}"))
        else:
            quotient = value / factor
            if not _is_json_integer(quotient):
                errs.append(field_invalid(
                    path, value, f"{path} in body should be a multiple of {_shown(factor)}"))
    if s.minimum is not None:
        bound = int(s.minimum) if is_int else s.minimum
        if value < bound or (s.exclusive_minimum and value <= bound):
            op = "greater than" if s.exclusive_minimum else "greater than or equal to"
            shown = str(bound) if is_int else _shown(bound)
            errs.append(field_invalid(path, value, f"{path} in body should be {op} {shown}"))
    if s.maximum is not None:
        bound = int(s.maximum) if is_int else s.maximum
        if value > bound or (s.exclusive_maximum and value >= bound):
            op = "less than" if s.exclusive_maximum else "less than or equal to"
            shown = str(bound) if is_int else _shown(bound)
            errs.append(field_invalid(path, value, f"{path} in body should be {op} {shown}"))


def _shown(number: int | float) -> str:
    return go_float(float(number))


def _is_json_integer(f: float) -> bool:
    if math.isnan(f) or math.isinf(f):
        return False
    g = float(round(f))
    if f == g:
        return True
    diff = abs(f - g)
    return diff / min(abs(f) + abs(g), 1.7976931348623157e308) < 1e-9


def _validate_array(s: Node, value: list[Any], path: str, errs: list[Cause],
                    extra: list[Cause] | None, lists: list[Cause] | None) -> None:
    items = s.items
    if items is not None:
        for i, v in enumerate(value):
            _validate(items, v, f"{path}[{i}]", errs, extra, lists)
    size = len(value)
    if s.min_items is not None and size < s.min_items:
        errs.append(field_invalid(
            path, size, f"{path} in body should have at least {s.min_items} items"))
    if s.max_items is not None and size > s.max_items:
        errs.append(field_too_many(path, size, s.max_items))
    if s.unique_items and _duplicates([_enum_key(v) for v in value]):
        errs.append(field_invalid(path, "", f"{path} in body shouldn't contain duplicates"))
    if lists is not None and s.list_type and size > 1:
        if s.list_type == "set":
            for i in _duplicates([_enum_key(v) for v in value]):
                lists.append(field_duplicate(f"{path}[{i}]", value[i]))
        else:
            lists.extend(_list_map_duplicates(s.list_map_keys, value, path))


def _duplicates(keys: list[Any]) -> list[int]:
    """Indexes of the second appearance of each repeated key (validateListSet)."""
    seen: dict[Any, int] = {}
    out = []
    for i, key in enumerate(keys):
        times = seen.get(key, 0)
        if times == 1:
            out.append(i)
        seen[key] = times + 1
    return out


_UNSPECIFIED: Any = ("unspecified",)


def _list_map_duplicates(keys: tuple[str, ...], value: list[Any], path: str) -> list[Cause]:
    for i, x in enumerate(value):
        if x is not None and type(x) is not dict:
            return [field_invalid(f"{path}[{i}]", x, "must be an object for an array of "
                                  "list-type map")]
    entries: list[dict[str, Any]] = []
    for x in value:
        entry = {}
        if x is not None:
            for k in keys:
                if k in x:
                    entry[k] = x[k]
        entries.append(entry)
    if len(keys) == 1:
        key = keys[0]
        found = [_enum_key(e[key]) if key in e else _UNSPECIFIED for e in entries]
    else:
        found = [go_json(e) for e in entries]
    return [field_duplicate(f"{path}[{i}]", entries[i]) for i in _duplicates(found)]


def _validate_object(s: Node, value: dict[str, Any], path: str, errs: list[Cause],
                     extra: list[Cause] | None, lists: list[Cause] | None, root: bool) -> None:
    size = len(value)
    if s.min_properties is not None and size < s.min_properties:
        errs.append(field_invalid(
            path, size, f"{path} in body should have at least {s.min_properties} properties"))
        return
    if s.max_properties is not None and size > s.max_properties:
        errs.append(field_too_many(path, size, s.max_properties))
        return
    if extra is not None and s.embedded and not root:
        extra.extend(_validate_embedded(value, path))
    props = s.properties
    if s.has_additional:
        for k, v in value.items():
            if props is not None and k in props:
                continue
            if not s.additional_allows:
                errs.append(field_invalid(path, k, f"{_child(path, k)} in body is a forbidden "
                                                   "property"))
            elif s.additional is not None:
                _validate(s.additional, v, _child(path, k), errs, extra, lists)
    if props is not None:
        for k, prop in props.items():
            if k in value:
                _validate(prop, value[k], _child(path, k), errs, extra, lists)
    for k in s.required:
        if k not in value:
            errs.append(field_required(f"{path}.{k}" if path else k))


def _validate_composition(s: Node, value: Any, path: str, errs: list[Cause]) -> None:
    def run(branch: Node) -> list[Cause]:
        out: list[Cause] = []
        _validate(branch, value, path, out, None, None)
        return out

    if s.any_of:
        best: list[Cause] | None = None
        for branch in s.any_of:
            result = run(branch)
            if not result:
                best = None
                break
            if best is None or len(result) < len(best):
                best = result
        else:
            errs.append(_composite(f"{go_quote(path)} must validate at least one schema (anyOf)"))
        if best:
            errs.extend(best)
    if s.one_of:
        valid = 0
        best = None
        for branch in s.one_of:
            result = run(branch)
            if not result:
                valid += 1
                best = None
            elif valid == 0 and (best is None or len(result) < len(best)):
                best = result
        if valid != 1:
            found = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
            errs.append(_composite(
                f"{go_quote(path)} must validate one and only one schema (oneOf). {found}"))
            if best:
                errs.extend(best)
    if s.all_of:
        valid = 0
        for branch in s.all_of:
            result = run(branch)
            if not result:
                valid += 1
            errs.extend(result)
        if valid != len(s.all_of):
            none = ". None validated" if valid == 0 else ""
            errs.append(_composite(f"{go_quote(path)} must validate all the schemas (allOf){none}"))
    if s.not_ is not None and not run(s.not_):
        errs.append(_composite(f"{go_quote(path)} must not validate the schema (not)"))


def _composite(message: str) -> Cause:
    # kube-openapi reports these without a field; kube-apiserver prints the nil path as "<nil>".
    return field_invalid("<nil>", "", message)


def _validate_embedded(value: dict[str, Any], path: str) -> list[Cause]:
    """apiVersion and kind required, metadata a valid ObjectMeta (names: path segments)."""
    causes: list[Cause] = []
    for key in ("apiVersion", "kind"):
        if key not in value:
            causes.append(field_required(_child(path, key), "must not be empty"))
    api_version = value.get("apiVersion")
    if "apiVersion" in value:
        at = _child(path, "apiVersion")
        if not isinstance(api_version, str):
            causes.append(field_invalid(at, api_version, "must be a string"))
        elif not api_version:
            causes.append(field_invalid(at, api_version, "must not be empty"))
        elif api_version.count("/") > 1 or api_version.startswith("/") or \
                api_version.endswith("/"):
            causes.append(field_invalid(
                at, api_version, f"unexpected GroupVersion string: {api_version}"))
    if "kind" in value:
        at = _child(path, "kind")
        kind = value["kind"]
        if not isinstance(kind, str):
            causes.append(field_invalid(at, kind, "must be a string"))
        elif not kind:
            causes.append(field_invalid(at, kind, "must not be empty"))
        else:
            problems = meta.is_dns1035_label(kind.lower())
            if problems:
                causes.append(field_invalid(
                    at, kind, "may have mixed case, but should otherwise match: "
                    + ",".join(problems)))
    metadata = value.get("metadata")
    if isinstance(metadata, dict):
        shadow = dict(metadata)
        shadow.setdefault("name", "fakename")
        causes.extend(meta.validate_object_meta(
            shadow, bool(shadow.get("namespace")), path=_child(path, "metadata"),
            name_rule=meta.validate_path_segment_name,
        ))
    elif "metadata" in value and metadata is not None:
        causes.append(field_invalid(_child(path, "metadata"), metadata, "must be an object"))
    return causes


# -- the rules a CRD schema must follow (apiextensions validation + structural schema)

_SCHEMA_KEYS = frozenset({
    "id", "$schema", "$ref", "description", "type", "format", "title", "default", "maximum",
    "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
    "maxItems", "minItems", "uniqueItems", "multipleOf", "enum", "maxProperties",
    "minProperties", "required", "items", "allOf", "oneOf", "anyOf", "not", "properties",
    "additionalProperties", "patternProperties", "dependencies", "additionalItems",
    "definitions", "externalDocs", "example", "nullable", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type", "x-kubernetes-map-type", "x-kubernetes-validations",
})
_TYPES = ("array", "boolean", "integer", "number", "object", "string")
_UNSUPPORTED = {
    "$ref": "$ref is not supported",
    "definitions": "definitions is not supported",
    "dependencies": "dependencies is not supported",
    "patternProperties": "patternProperties is not supported",
    "additionalItems": "additionalItems is not supported",
    "id": "id is not supported",
    "$schema": "$schema is not supported",
}
_NESTED_FORBIDDEN = {
    "type": "must be empty to be structural",
    "additionalProperties": "must be undefined to be structural",
    "default": "must be undefined to be structural",
    "title": "must be empty to be structural",
    "description": "must be empty to be structural",
    "nullable": "must be false to be structural",
    "x-kubernetes-preserve-unknown-fields": "must be undefined to be structural",
    "x-kubernetes-embedded-resource": "must be false to be structural",
    "x-kubernetes-int-or-string": "must be false to be structural",
    "x-kubernetes-list-map-keys": "must be empty to be structural",
    "x-kubernetes-list-type": "must be undefined to be structural",
    "x-kubernetes-map-type": "must be undefined to be structural",
}
_ROOT, _FIELD, _ITEM = "root", "field", "item"


def structural_problems(schema: object, path: str) -> list[Cause]:
    """Why a CRD version's openAPIV3Schema (at field path `path`) would be rejected by
    kube-apiserver: not structural, unsupported keywords, invalid values or defaults."""
    if schema is None:
        return [field_required(path, "schemas are required")]
    if not isinstance(schema, dict):
        return [field_invalid(path, schema, "must be an object")]
    errs: list[Cause] = []
    _check(schema, path, _ROOT, errs, nested=False, in_metadata=False)
    return errs


def _check(s: dict[str, Any], path: str, level: str, errs: list[Cause], *, nested: bool,
           in_metadata: bool) -> None:
    for key in s:
        if key not in _SCHEMA_KEYS:
            errs.append(Cause("FieldValueNotFound", f'unknown field "{key}"', path))
    for key, why in _UNSUPPORTED.items():
        if key in s:
            errs.append(field_forbidden(f"{path}.{key}", why))
    if nested:
        for key, why in _NESTED_FORBIDDEN.items():
            if s.get(key) not in (None, False, "", []) or (
                    key in ("x-kubernetes-preserve-unknown-fields", "default") and key in s):
                errs.append(field_forbidden(f"{path}.{key}", why))
    _check_values(s, path, errs)
    if not nested:
        _check_structure(s, path, level, errs, in_metadata)

    props = s.get("properties")
    if props is not None and not isinstance(props, dict):
        errs.append(field_invalid(f"{path}.properties", props, "must be an object"))
    elif props:
        for k, v in props.items():
            at = f"{path}.properties[{k}]"
            if not isinstance(v, dict):
                errs.append(field_invalid(at, v, "must be an object"))
                continue
            _check(v, at, _FIELD, errs, nested=nested,
                   in_metadata=in_metadata or (level == _ROOT and k == "metadata"))
            if nested and level == _ROOT and k == "metadata":
                errs.append(field_forbidden(at, "must not be specified in a nested context"))
    additional = s.get("additionalProperties")
    if isinstance(additional, dict):
        _check(additional, f"{path}.additionalProperties", _FIELD, errs, nested=nested,
               in_metadata=in_metadata)
    items = s.get("items")
    if isinstance(items, list):
        errs.append(field_forbidden(f"{path}.items",
                                    "items must be a schema object and not an array"))
    elif isinstance(items, dict):
        _check(items, f"{path}.items", _ITEM, errs, nested=nested, in_metadata=in_metadata)
    elif items is not None:
        errs.append(field_invalid(f"{path}.items", items, "must be an object"))
    int_or_string = s.get("x-kubernetes-int-or-string") is True
    for key in ("allOf", "anyOf", "oneOf"):
        branches = s.get(key)
        if branches is None:
            continue
        if not isinstance(branches, list):
            errs.append(field_invalid(f"{path}.{key}", branches, "must be a list of schemas"))
            continue
        for i, branch in enumerate(branches):
            at = f"{path}.{key}[{i}]"
            if not isinstance(branch, dict):
                errs.append(field_invalid(at, branch, "must be an object"))
                continue
            if int_or_string and _int_or_string_branch(key, branch):
                continue
            _check(branch, at, level, errs, nested=True, in_metadata=in_metadata)
    if isinstance(s.get("not"), dict):
        _check(s["not"], f"{path}.not", level, errs, nested=True, in_metadata=in_metadata)
    if not nested and "default" in s:
        _check_default(s, path, errs, in_metadata)


def _int_or_string_branch(key: str, branch: dict[str, Any]) -> bool:
    # `anyOf: [{type: integer}, {type: string}]` is the allowed spelling of int-or-string.
    if key == "anyOf":
        return set(branch) == {"type"} and branch["type"] in ("integer", "string")
    if key == "allOf" and set(branch) == {"anyOf"} and isinstance(branch["anyOf"], list):
        return all(isinstance(b, dict) and _int_or_string_branch("anyOf", b)
                   for b in branch["anyOf"])
    return False


def _check_values(s: dict[str, Any], path: str, errs: list[Cause]) -> None:
    for key in ("minimum", "maximum", "multipleOf"):
        if key in s and _number(s[key]) is None:
            errs.append(field_invalid(f"{path}.{key}", s[key], "must be a number"))
    if isinstance(s.get("multipleOf"), (int, float)) and not isinstance(s["multipleOf"], bool) \
            and s["multipleOf"] <= 0:
        errs.append(field_invalid(f"{path}.multipleOf", s["multipleOf"], "must be positive"))
    for key in ("minLength", "maxLength", "minItems", "maxItems", "minProperties",
                "maxProperties"):
        if key in s:
            value = s[key]
            if _count(value) is None:
                errs.append(field_invalid(f"{path}.{key}", value, "must be an integer"))
            elif value < 0:
                errs.append(field_invalid(f"{path}.{key}", value,
                                          "must be greater than or equal to 0"))
    for key in ("exclusiveMinimum", "exclusiveMaximum", "nullable", "uniqueItems",
                "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string",
                "x-kubernetes-preserve-unknown-fields"):
        if key in s and not isinstance(s[key], bool):
            errs.append(field_invalid(f"{path}.{key}", s[key], "must be a boolean"))
    if s.get("uniqueItems") is True:
        errs.append(field_forbidden(
            f"{path}.uniqueItems",
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"))
    if "required" in s and (not isinstance(s["required"], list)
                            or not all(isinstance(r, str) for r in s["required"])):
        errs.append(field_invalid(f"{path}.required", s["required"], "must be a list of strings"))
    if "enum" in s and not isinstance(s["enum"], list):
        errs.append(field_invalid(f"{path}.enum", s["enum"], "must be a list"))
    if "format" in s and not isinstance(s["format"], str):
        errs.append(field_invalid(f"{path}.format", s["format"], "must be a string"))
    pattern = s.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str):
            errs.append(field_invalid(f"{path}.pattern", pattern, "must be a string"))
        else:
            try:
                re.compile(pattern)
            except re.error as exc:
                errs.append(field_invalid(
                    f"{path}.pattern", pattern,
                    f"must be a valid regular expression, but isn't: {exc}"))
    rules = s.get("x-kubernetes-validations")
    if rules is not None and (not isinstance(rules, list) or not all(
            isinstance(r, dict) and isinstance(r.get("rule", ""), str) for r in rules)):
        errs.append(field_invalid(f"{path}.x-kubernetes-validations", rules,
                                  "must be a list of objects with a rule"))
    elif rules:
        errs.extend(rule_problems_of_shape(rules, path))


def _check_structure(s: dict[str, Any], path: str, level: str, errs: list[Cause],
                     in_metadata: bool) -> None:
    t = s.get("type")
    int_or_string = s.get("x-kubernetes-int-or-string") is True
    embedded = s.get("x-kubernetes-embedded-resource") is True
    preserve = s.get("x-kubernetes-preserve-unknown-fields")
    if t is not None and not isinstance(t, str):
        errs.append(field_invalid(f"{path}.type", t, "must be a string"))
        t = None
    if t == "null":
        errs.append(field_forbidden(f"{path}.type",
                                    "type cannot be set to null, use nullable as an alternative"))
    elif t and t not in _TYPES:
        errs.append(field_not_supported(f"{path}.type", t, _TYPES))
    if preserve is False:
        errs.append(field_invalid(f"{path}.x-kubernetes-preserve-unknown-fields", False,
                                  "must be true or undefined"))
    if int_or_string:
        if t:
            errs.append(field_invalid(f"{path}.type", t,
                                      "must be empty if x-kubernetes-int-or-string is true"))
        if preserve is True:
            errs.append(field_invalid(f"{path}.x-kubernetes-preserve-unknown-fields", True,
                                      "must be false if x-kubernetes-int-or-string is true"))
        if embedded:
            errs.append(field_invalid(f"{path}.x-kubernetes-embedded-resource", True,
                                      "must be false if x-kubernetes-int-or-string is true"))
    if embedded and t != "object":
        if not t:
            errs.append(field_required(f"{path}.type",
                                       "must be object if x-kubernetes-embedded-resource is true"))
        else:
            errs.append(field_invalid(f"{path}.type", t,
                                      "must be object if x-kubernetes-embedded-resource is true"))
    elif not t and not int_or_string and not embedded and preserve is not True:
        where = {_ROOT: "at the root", _ITEM: "for specified array items",
                 _FIELD: "for specified object fields"}[level]
        errs.append(field_required(f"{path}.type", f"must not be empty {where}"))
    if level == _ROOT and t and t != "object":
        errs.append(field_invalid(f"{path}.type", t, "must be object at the root"))
    if t == "array" and "items" not in s:
        errs.append(field_required(f"{path}.items", "must be specified"))

    props = s.get("properties")
    additional = s.get("additionalProperties")
    if additional is not None:
        if not isinstance(additional, (dict, bool)):
            errs.append(field_invalid(f"{path}.additionalProperties", additional,
                                      "must be a schema object or a boolean"))
        elif props and (additional is False or isinstance(additional, dict)):
            errs.append(field_forbidden(f"{path}.additionalProperties",
                                        "additionalProperties and properties are mutual exclusive"))
        if embedded:
            errs.append(field_forbidden(
                f"{path}.additionalProperties",
                "must not be used if x-kubernetes-embedded-resource is set"))
    if embedded and preserve is not True and not props:
        errs.append(field_required(
            f"{path}.properties", "must not be empty if x-kubernetes-embedded-resource is true "
            "without x-kubernetes-preserve-unknown-fields"))

    if (level == _ROOT or embedded) and isinstance(props, dict):
        for key, want in (("kind", "string"), ("apiVersion", "string"), ("metadata", "object")):
            sub = props.get(key)
            if isinstance(sub, dict) and sub.get("type") != want:
                errs.append(field_invalid(f"{path}.properties[{key}].type", sub.get("type", ""),
                                          f"must be {want}"))
    if level == _ROOT and isinstance(props, dict) and isinstance(props.get("metadata"), dict):
        metadata = props["metadata"]
        allowed = {"type", "properties"}
        names = metadata.get("properties")
        if set(metadata) - allowed or (isinstance(names, dict) and set(names) - {
                "name", "generateName"}):
            errs.append(field_forbidden(
                f"{path}.properties[metadata]",
                "must not specify anything other than name and generateName, but metadata is "
                "implicitly specified"))
    list_type = s.get("x-kubernetes-list-type")
    keys = s.get("x-kubernetes-list-map-keys")
    if list_type is not None:
        if list_type not in ("atomic", "set", "map"):
            errs.append(field_not_supported(f"{path}.x-kubernetes-list-type", list_type,
                                            ("atomic", "set", "map")))
        elif t != "array":
            errs.append(field_invalid(f"{path}.x-kubernetes-list-type", list_type,
                                      "must only be used if type is array"))
        elif list_type == "map":
            items = s.get("items")
            if not isinstance(items, dict) or items.get("type") != "object":
                errs.append(field_invalid(f"{path}.items.type",
                                          items.get("type", "") if isinstance(items, dict) else "",
                                          "must be object if x-kubernetes-list-type is map"))
            if not keys:
                errs.append(field_required(f"{path}.x-kubernetes-list-map-keys",
                                           "must not be empty if x-kubernetes-list-type is map"))
            elif isinstance(items, dict) and isinstance(keys, list):
                item_props = items.get("properties") or {}
                for i, key in enumerate(keys):
                    if not isinstance(key, str) or key not in item_props:
                        errs.append(field_invalid(
                            f"{path}.x-kubernetes-list-map-keys[{i}]", key,
                            "entries must all be names of item properties"))
    if keys is not None and list_type != "map":
        errs.append(field_forbidden(f"{path}.x-kubernetes-list-map-keys",
                                    'must only be used if x-kubernetes-list-type is "map"'))
    map_type = s.get("x-kubernetes-map-type")
    if map_type is not None and map_type not in ("granular", "atomic"):
        errs.append(field_not_supported(f"{path}.x-kubernetes-map-type", map_type,
                                        ("granular", "atomic")))


def _check_default(s: dict[str, Any], path: str, errs: list[Cause], in_metadata: bool) -> None:
    at = f"{path}.default"
    if in_metadata:
        errs.append(field_forbidden(at, "must not be set inside metadata"))
        return
    value = copy.deepcopy(s["default"])
    if value is None:
        return
    node = Node(s)
    unknown: list[str] = []
    if type(value) is dict or type(value) is list:
        _prune(value, node, "", unknown)
    if unknown:
        errs.append(field_invalid(
            at, s["default"], "must not have unknown fields, got: " + ", ".join(sorted(unknown))))
        return
    if type(value) is dict or type(value) is list:
        _default(value, node)
    causes: list[Cause] = []
    _validate(node, value, "", causes, causes, causes)
    for cause in causes:
        field = at if cause.field in ("", "<nil>") else f"{at}.{cause.field}"
        errs.append(Cause(cause.reason, cause.message, field))
