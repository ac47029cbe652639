"""The checked syntax tree of a compiled expression, read from its serialized
`cel.expr.CheckedExpr` (the engine exposes no tree of its own): enough of it to find the
variables a rule uses and to estimate its cost."""

from __future__ import annotations

from dataclasses import dataclass, field

# Field numbers of cel.expr.Expr and its parts (cel-spec syntax.proto / checked.proto).
_CONST, _IDENT, _SELECT, _CALL, _LIST, _STRUCT, _COMPREHENSION = 3, 4, 5, 6, 7, 8, 9


@dataclass
class Expr:
    """One node: kind is const, ident, select, call, list, struct or comprehension."""

    kind: str
    id: int = 0
    name: str = ""  # ident name, select field, call function, comprehension iter var
    args: list[Expr] = field(default_factory=list)  # call args (target first), list items
    target: bool = False  # a receiver-style call
    test_only: bool = False  # has()
    size: int = 0  # a string/bytes constant's length
    # comprehension parts
    iter_range: Expr | None = None
    accu_init: Expr | None = None
    loop_condition: Expr | None = None
    loop_step: Expr | None = None
    result: Expr | None = None
    accu_var: str = ""

    def walk(self) -> list[Expr]:
        out = [self]
        for child in self.children():
            out.extend(child.walk())
        return out

    def children(self) -> list[Expr]:
        parts = [self.iter_range, self.accu_init, self.loop_condition, self.loop_step,
                 self.result]
        return self.args + [p for p in parts if p is not None]


def _varint(b: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return result, i


def _fields(b: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _varint(b, i)
        elif wire == 2:
            n, i = _varint(b, i)
            value = b[i:i + n]
            i += n
        elif wire == 1:
            value = b[i:i + 8]
            i += 8
        elif wire == 5:
            value = b[i:i + 4]
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((number, value))
    return out


def _bytes(fields: list[tuple[int, int | bytes]], number: int) -> list[bytes]:
    return [v for n, v in fields if n == number and isinstance(v, bytes)]


def _text(fields: list[tuple[int, int | bytes]], number: int) -> str:
    found = _bytes(fields, number)
    return found[0].decode() if found else ""


@dataclass
class Checked:
    """A checked expression: its tree, the type of each node and where each node starts."""

    root: Expr
    types: dict[int, bytes]  # node id -> serialized cel.expr.Type
    positions: dict[int, int]  # node id -> offset in the source


def parse_checked(serialized: bytes) -> Expr:
    """The root expression of a serialized CheckedExpr (wrapped in google.protobuf.Any)."""
    return read_checked(serialized).root


def read_checked(serialized: bytes, *, types: bool = True) -> Checked:
    """The tree, and (with `types`) the node types and positions, of a CheckedExpr."""
    outer = _fields(serialized)
    checked = _bytes(outer, 2)
    body = _fields(checked[0] if checked else serialized)
    exprs = _bytes(body, 4)
    root = _expr(exprs[0]) if exprs else Expr("const")
    if not types:
        return Checked(root, {}, {})
    node_types = {}
    for entry in _bytes(body, 3):  # type_map: map<int64, Type>
        parts = _fields(entry)
        key = next((v for n, v in parts if n == 1 and isinstance(v, int)), 0)
        value = _bytes(parts, 2)
        node_types[key] = value[0] if value else b""
    positions = {}
    for info in _bytes(body, 5):  # source_info.positions: map<int64, int32>
        for entry in _bytes(_fields(info), 4):
            parts = _fields(entry)
            key = next((v for n, v in parts if n == 1 and isinstance(v, int)), 0)
            positions[key] = next((v for n, v in parts if n == 2 and isinstance(v, int)), 0)
    return Checked(root, node_types, positions)


_PRIMITIVES = {1: "bool", 2: "int", 3: "uint", 4: "double", 5: "string", 6: "bytes"}
_WELL_KNOWN = {1: "any", 2: "google.protobuf.Timestamp", 3: "google.protobuf.Duration"}


def type_name(serialized: bytes) -> str:
    """A cel.expr.Type as cel-go prints it: int, list(string), map(string, int), ..."""
    for number, value in _fields(serialized):
        if number == 1:
            return "dyn"
        if number == 2:
            return "null_type"
        if number == 3 and isinstance(value, int):
            return _PRIMITIVES.get(value, "dyn")
        if number == 4 and isinstance(value, int):
            return f"wrapper({_PRIMITIVES.get(value, 'dyn')})"
        if number == 5 and isinstance(value, int):
            return _WELL_KNOWN.get(value, "dyn")
        if number == 6 and isinstance(value, bytes):
            elem = _bytes(_fields(value), 1)
            return f"list({type_name(elem[0]) if elem else 'dyn'})"
        if number == 7 and isinstance(value, bytes):
            parts = _fields(value)
            key, val = _bytes(parts, 1), _bytes(parts, 2)
            return (f"map({type_name(key[0]) if key else 'dyn'}, "
                    f"{type_name(val[0]) if val else 'dyn'})")
        if number in (9, 10) and isinstance(value, bytes):
            return value.decode()
        if number == 11:
            return "type"
        if number == 14 and isinstance(value, bytes):
            return _text(_fields(value), 1)
    return "dyn"


def mixed_literal(checked: Checked) -> tuple[int, str, str] | None:
    """The first element of a list or map literal whose type differs from the first
    element's (cel-go's HomogeneousAggregateLiterals, which kube enables): its source
    offset, the expected and the found type names; None when every literal is homogeneous."""
    for e in checked.root.walk():
        if e.kind == "list":
            groups = [e.args]
        elif e.kind == "map":
            groups = [e.args[0::2], e.args[1::2]]
        else:
            continue
        for group in groups:
            if len(group) < 2:
                continue
            first = checked.types.get(group[0].id, b"")
            for item in group[1:]:
                found = checked.types.get(item.id, b"")
                if found != first and "dyn" not in (type_name(first), type_name(found)):
                    return (checked.positions.get(item.id, 0), type_name(first),
                            type_name(found))
    return None


def _expr(b: bytes) -> Expr:
    fields = _fields(b)
    node_id = next((v for n, v in fields if n == 2 and isinstance(v, int)), 0)
    node = _node(fields)
    node.id = node_id
    return node


def _node(fields: list[tuple[int, int | bytes]]) -> Expr:
    for number, value in fields:
        if not isinstance(value, bytes):
            continue
        inner = _fields(value)
        if number == _CONST:
            strings = _bytes(inner, 6) + _bytes(inner, 7)
            return Expr("const", size=len(strings[0]) if strings else 0)
        if number == _IDENT:
            return Expr("ident", name=_text(inner, 1))
        if number == _SELECT:
            operand = _bytes(inner, 1)
            test_only = any(n == 3 and v == 1 for n, v in inner)
            return Expr("select", name=_text(inner, 2), test_only=test_only,
                        args=[_expr(operand[0])] if operand else [])
        if number == _CALL:
            target = _bytes(inner, 1)
            args = [_expr(a) for a in _bytes(inner, 3)]
            if target:
                args.insert(0, _expr(target[0]))
            return Expr("call", name=_text(inner, 2), args=args, target=bool(target))
        if number == _LIST:
            return Expr("list", args=[_expr(e) for e in _bytes(inner, 1)])
        if number == _STRUCT:
            values: list[Expr] = []
            is_map = False
            for entry in _bytes(inner, 2):
                parts = _fields(entry)
                keys = _bytes(parts, 3)
                is_map = is_map or bool(keys)
                values.extend(_expr(v) for v in keys + _bytes(parts, 4))
            return Expr("map" if is_map else "struct", args=values)
        if number == _COMPREHENSION:
            def part(n: int, inner: list[tuple[int, int | bytes]] = inner) -> Expr | None:
                found = _bytes(inner, n)
                return _expr(found[0]) if found else None
            return Expr("comprehension", name=_text(inner, 1), iter_range=part(2),
                        accu_var=_text(inner, 3), accu_init=part(4),
                        loop_condition=part(5), loop_step=part(6), result=part(7))
    return Expr("const")


def uses_variable(root: Expr, name: str) -> bool:
    return any(e.kind == "ident" and e.name == name for e in root.walk())
