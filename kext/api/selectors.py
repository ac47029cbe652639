"""Label and field selectors (k8s.io/apimachinery/pkg/labels and pkg/fields): parsed once per
distinct query string, matched cheaply per object. Errors are 400 BadRequest Statuses with
kube-apiserver's messages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from kext.api import errors, meta
from kext.api.errors import Cause, causes_message, field_invalid, field_not_supported, go_value

if TYPE_CHECKING:
    from kext.api.resource import Version

# -- label selectors

EXISTS, DOES_NOT_EXIST, IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GT, LT = (
    "exists", "!", "in", "notin", "=", "==", "!=", "gt", "lt",
)
_BINARY_OPERATORS = ("in", "notin", "=", "==", "!=", "gt", "lt")
_VALID_OPERATORS = (*_BINARY_OPERATORS, "exists", "!")


@dataclass(frozen=True)
class Requirement:
    """One requirement of a label selector: key, operator and (sorted) values."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return labels.get(self.key) in self.values if self.key in labels else False
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if self.key not in labels:
            return False
        try:
            have, want = int(labels[self.key]), int(self.values[0])
        except (ValueError, IndexError):
            return False
        return have > want if op == GT else have < want

    def __str__(self) -> str:
        if self.operator == DOES_NOT_EXIST:
            return "!" + self.key
        if self.operator == EXISTS:
            return self.key
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({','.join(self.values)})"
        op = {GT: ">", LT: "<"}.get(self.operator, self.operator)
        return f"{self.key}{op}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    """An AND of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether an object with these labels (None: no labels) is selected."""
        labels = labels or {}
        for requirement in self.requirements:  # noqa: SIM110 - a loop beats all() per object
            if not requirement.matches(labels):
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_TOKENS = {")": ")", ",": ",", "!": "!", "==": "==", "=": "=", ">": ">", "in": "in", "<": "<",
           "!=": "!=", "notin": "notin", "(": "("}
_ID, _END, _ERROR = "id", "end", "error"


def _lex(text: str) -> list[tuple[str, str]]:
    """The labels lexer: identifiers, keywords and operators, then an end token."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            out.append((_END, ""))
            return out
        if text[i] in _SPECIAL:
            buffer, last = "", None
            while i < n and text[i] in _SPECIAL:
                candidate = buffer + text[i]
                if candidate in _TOKENS:
                    buffer, last = candidate, candidate
                    i += 1
                elif last is not None:
                    break
                else:
                    buffer = candidate
                    i += 1
            if last is None:
                out.append((_ERROR, f"error expected: keyword found '{buffer}'"))
            else:
                out.append((last, last))
            continue
        start = i
        while i < n and text[i] not in _SPECIAL and text[i] not in _WHITESPACE:
            i += 1
        word = text[start:i]
        out.append((word if word in ("in", "notin") else _ID, word))


class _LabelParser:
    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def peek(self, values: bool = True) -> tuple[str, str]:
        tok, lit = self.items[self.pos]
        if values and tok in ("in", "notin"):
            tok = _ID
        return tok, lit

    def take(self, values: bool = True) -> tuple[str, str]:
        tok = self.peek(values)
        self.pos += 1
        return tok

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self.peek()
            if tok in (_ID, "!"):
                requirements.append(self.requirement())
                tok, lit = self.take()
                if tok == _END:
                    return requirements
                if tok == ",":
                    tok2, lit2 = self.peek()
                    if tok2 not in (_ID, "!"):
                        raise ValueError(f"found '{lit2}', expected: identifier after ','")
                else:
                    raise ValueError(f"found '{lit}', expected: ',' or 'end of string'")
            elif tok == _END:
                return requirements
            else:
                raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        try:
            return self._requirement()
        except ValueError as exc:
            raise ValueError(f"unable to parse requirement: {exc}") from None

    def _requirement(self) -> Requirement:
        tok, key = self.take()
        operator = ""
        if tok == "!":
            operator = DOES_NOT_EXIST
            tok, key = self.take()
        if tok != _ID:
            raise ValueError(f"found '{key}', expected: identifier")
        problems = meta.is_qualified_name(key)
        if problems:
            # kube validates the key against a nil field path, printed as "<nil>".
            raise ValueError(causes_message([field_invalid("<nil>", key, "; ".join(problems))]))
        if self.peek()[0] in (_END, ","):
            return _new_requirement(key, operator or EXISTS, [])
        if operator == DOES_NOT_EXIST:
            return _new_requirement(key, operator, [])
        op_tok, op_lit = self.take(values=False)
        operator = {"in": IN, "notin": NOT_IN, "=": EQUALS, "==": DOUBLE_EQUALS,
                    "!=": NOT_EQUALS, ">": GT, "<": LT}.get(op_tok, "")
        if not operator:
            raise ValueError(f"found '{op_lit}', expected: in, notin, =, ==, !=, gt, lt")
        values = self.set_values() if operator in (IN, NOT_IN) else self.exact_value()
        return _new_requirement(key, operator, sorted(values))

    def set_values(self) -> set[str]:
        tok, lit = self.take()
        if tok != "(":
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = self.peek()
        if tok == ")":
            self.take()
            return {""}
        if tok not in (_ID, ","):
            raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            tok, lit = self.take()
            if tok == _ID:
                values.add(lit)
                tok2, lit2 = self.peek()
                if tok2 == ",":
                    continue
                if tok2 == ")":
                    break
                raise ValueError(f"found '{lit2}', expected: ',' or ')'")
            if tok == ",":
                if not values:
                    values.add("")
                tok2, _ = self.peek()
                if tok2 == ")":
                    values.add("")
                    break
                if tok2 == ",":
                    self.take()
                    values.add("")
                continue
            raise ValueError(f"found '{lit}', expected: ',', or identifier")
        tok, _ = self.take()
        if tok != ")":
            raise ValueError(f"found '{lit}', expected: ')'")
        return values

    def exact_value(self) -> set[str]:
        tok, _ = self.peek()
        if tok in (_END, ","):
            return {""}
        tok, lit = self.take()
        if tok == _ID:
            return {lit}
        raise ValueError(f"found '{lit}', expected: identifier")


def _new_requirement(key: str, operator: str, values: list[str]) -> Requirement:
    """NewRequirement: operator arity and label-value rules, kube's messages."""
    causes: list[Cause] = []
    problems = meta.is_qualified_name(key)
    if problems:
        causes.append(field_invalid("key", key, "; ".join(problems)))
    if operator in (IN, NOT_IN) and not values:
        causes.append(field_invalid("values", values,
                                    "for 'in', 'notin' operators, values set can't be empty"))
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS) and len(values) != 1:
        causes.append(field_invalid("values", values,
                                    "exact-match compatibility requires one single value"))
    elif operator in (GT, LT):
        if len(values) != 1:
            causes.append(field_invalid(
                "values", values, "for 'Gt', 'Lt' operators, exactly one value is required"))
        for i, value in enumerate(values):
            try:
                int(value, 10)
            except ValueError:
                causes.append(field_invalid(
                    f"values[{i}]", value,
                    "for 'Gt', 'Lt' operators, the value must be an integer"))
    elif operator not in _VALID_OPERATORS:
        causes.append(field_not_supported("operator", operator, _VALID_OPERATORS))
    for i, value in enumerate(values):
        problems = meta.is_valid_label_value(value)
        if problems:
            causes.append(field_invalid(f"values[{i}][{key}]", value, "; ".join(problems)))
    if causes:
        raise ValueError(causes_message(causes))
    return Requirement(key, operator, tuple(values))


@lru_cache(maxsize=1024)
def parse_label_selector(text: str) -> LabelSelector:
    """Parse a `labelSelector` query value (`a=b,c!=d,e in (x,y),!f,g`); a 400 StatusError
    with kube's message (`unable to parse requirement: ...`) when it is malformed."""
    try:
        requirements = _LabelParser(text).parse()
    except ValueError as exc:
        raise errors.bad_request(str(exc)) from None
    return LabelSelector(tuple(sorted(requirements, key=lambda r: r.key)))


# -- field selectors


@dataclass(frozen=True)
class FieldTerm:
    """`field=value` (equal) or `field!=value` (not equal)."""

    field: str
    value: str
    equal: bool


@dataclass(frozen=True)
class FieldSelector:
    """An AND of field terms, matched against a flat `{field: value}` set (see field_set);
    an absent field has the value ""."""

    terms: tuple[FieldTerm, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        for term in self.terms:  # noqa: SIM110 - a loop beats all() per object
            if (fields.get(term.field, "") == term.value) != term.equal:
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.terms

    def fields(self) -> frozenset[str]:
        return frozenset(t.field for t in self.terms)

    def requires_exact_match(self, field: str) -> str | None:
        """The value `field` must equal (`metadata.name=foo`), or None."""
        for term in self.terms:
            if term.field == field and term.equal:
                return term.value
        return None

    def check_supported(self, version: Version, namespaced: bool) -> None:
        """400 `field label not supported: x` for a field the resource cannot be selected by
        (metadata.name, metadata.namespace when namespaced, and the declared selectableFields)."""
        supported = supported_fields(version, namespaced)
        for term in self.terms:
            if term.field not in supported:
                raise errors.bad_request(f"field label not supported: {term.field}")

    def __str__(self) -> str:
        return ",".join(f"{t.field}{'=' if t.equal else '!='}{escape_field_value(t.value)}"
                        for t in self.terms)


def escape_field_value(value: str) -> str:
    """Escape `\\`, `,` and `=` for use as a field selector value (fields.EscapeValue)."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    slash = False
    for c in value:
        if slash:
            if c not in "\\,=":
                raise errors.bad_request(
                    f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            slash = False
        elif c == "\\":
            slash = True
        elif c in ",=":
            # Go prints the rune with %v: its code point.
            raise errors.bad_request(
                f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if slash:
        raise errors.bad_request("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    terms, start, slash = [], 0, False
    for i, c in enumerate(text):
        if slash:
            slash = False
        elif c == "\\":
            slash = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


@lru_cache(maxsize=1024)
def parse_field_selector(text: str) -> FieldSelector:
    """Parse a `fieldSelector` query value (`a=b,c!=d`, `\\`-escaped `,`/`=`/`\\` in values);
    a 400 StatusError with kube's message when it is malformed."""
    terms = []
    for part in sorted(_split_terms(text)) if text else ():
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise errors.bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        lhs, op, rhs = split
        terms.append(FieldTerm(lhs, _unescape(rhs), op != "!="))
    return FieldSelector(tuple(terms))


# -- the fields of an object


@lru_cache(maxsize=256)
def _compiled_paths(selectable: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((p.lstrip("."), tuple(p.lstrip(".").split("."))) for p in selectable)


def supported_fields(version: Version, namespaced: bool) -> frozenset[str]:
    """The field labels a field selector may use on this version."""
    names = [name for name, _ in _compiled_paths(version.selectable_fields)]
    names.append("metadata.name")
    if namespaced:
        names.append("metadata.namespace")
    return frozenset(names)


def field_set(obj: Mapping[str, Any], version: Version, namespaced: bool) -> dict[str, str]:
    """The field set selectors match: metadata.name, metadata.namespace (namespaced only) and
    the version's selectableFields rendered as CRDs do (strings as is, integers in decimal,
    booleans `true`/`false`; absent, null or other types leave the field out)."""
    metadata = obj.get("metadata") or {}
    out = {"metadata.name": metadata.get("name") or ""}
    if namespaced:
        out["metadata.namespace"] = metadata.get("namespace") or ""
    for name, keys in _compiled_paths(version.selectable_fields):
        value: Any = obj
        for key in keys:
            if not isinstance(value, Mapping):
                value = None
                break
            value = value.get(key)
        if isinstance(value, (str, bool, int)):
            out[name] = go_value(value, quote_strings=False)
    return out
