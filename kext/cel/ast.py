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


def parse_checked(serialized: bytes) -> Expr:
    """The root expression of a serialized CheckedExpr (wrapped in google.protobuf.Any)."""
    outer = _fields(serialized)
    checked = _bytes(outer, 2)
    body = _fields(checked[0] if checked else serialized)
    exprs = _bytes(body, 4)
    return _expr(exprs[0]) if exprs else Expr("const")


def _expr(b: bytes) -> Expr:
    fields = _fields(b)
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
            for entry in _bytes(inner, 2):
                parts = _fields(entry)
                values.extend(_expr(v) for v in _bytes(parts, 3) + _bytes(parts, 4))
            return Expr("struct", args=values)
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
