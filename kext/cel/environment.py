"""The CEL environment a schema's rules compile in, on cel-expr-python (Google's C++ CEL).

Each rule is compiled twice over: type-checked in an environment where `self` (and `oldSelf`)
have the schema's types — objects as message types, so `self.nosuchfield` fails at CRD load
with cel-go's own wording — and then planned in one runtime environment where every variable
is `dyn`, which evaluates plain JSON dicts and lists without building messages. Both carry
the Kubernetes libraries (kext.cel.library), the strings and optional extensions, cel.bind,
and the cross-type numeric comparisons kube enables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_bindings, ext_optional, ext_strings
from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, struct_pb2, timestamp_pb2

from kext.cel import ast, cost
from kext.cel.library import (
    Function,
    Overload,
    authz,
    lists,
    quantity,
    regex,
    semver,
    types,
    urls,
)
from kext.cel.library import format as formats
from kext.cel.library import ip as ips
from kext.cel.schematypes import SchemaTypes

LIBRARIES: tuple[tuple[Function, ...], ...] = (
    lists.FUNCTIONS, regex.FUNCTIONS, urls.FUNCTIONS, quantity.FUNCTIONS, ips.FUNCTIONS,
    formats.FUNCTIONS, semver.FUNCTIONS, authz.FUNCTIONS,
)
_STRINGS_VERSION = 2  # kube-apiserver's ext.Strings version since 1.29

# format.named() and <Format>.validate() return optionals, which cannot cross the engine's
# Python bridge; they are spelled as functions returning a list of zero or one element and
# an optional index `[?0]`, which CEL itself turns into the optional.
_FORMAT_HELPERS: tuple[Function, ...] = (
    Function("format.__kextNamed", (Overload(
        "format_named_list", ("string",), "list(kubernetes.NamedFormat)",
        lambda name: [types.NamedFormat(value=name)] if name in formats.FORMATS else []),)),
    Function("__kextValidate", (Overload(
        "format_validate_list", ("kubernetes.NamedFormat", "string"), "list(list(string))",
        lambda f, s: [errs] if (errs := formats.FORMATS[f.value](s)) else [],
        member=True),)),
)
_NAMED = re.compile(r"\bformat\.named\(")
_VALIDATE = re.compile(r"\.validate\(")

_CHECK_PARAMS = [cel.Type(authz.RESOURCE_CHECK), cel.Type.STRING]
_DECISION = cel.Type(authz.DECISION)

_CROSS_NUMERIC = ("_<_", "_<=_", "_>_", "_>=_")
_NUMERIC_PAIRS = (("int", "double"), ("double", "int"), ("int", "uint"), ("uint", "int"),
                  ("uint", "double"), ("double", "uint"))
_OLD_SELF = "oldSelf"
MAX_ITERATIONS = 10_000  # cel-cpp's comprehension_max_iterations, fixed in cel-expr-python
_OLD_VALUE, _HAS_OLD = "__kextOld", "__kextHasOld"


class CompileError(Exception):
    """A rule that does not compile; the text is kube's `compilation failed: ...` detail."""


class EvaluationError(Exception):
    """A rule that failed at run time, in cel-go's words where they differ."""


@dataclass
class Program:
    """One compiled expression."""

    source: str
    program: Any  # cel.Expression, planned in the runtime environment
    tree: ast.Expr
    uses_old_self: bool

    def uses(self, *variables: str) -> bool:
        """Whether the expression reads any of these variables."""
        return any(ast.uses_variable(self.tree, name) for name in variables)

    def evaluate(self, activation: Any) -> Any:
        """The result, or EvaluationError."""
        try:
            result = self.program.eval(activation)
        except RuntimeError as exc:  # the engine's own limits (10,000 iterations) raise
            text = _go_error(_issues(str(exc).replace(" [INTERNAL]", "")))
            if "Iteration budget" in text:
                text += (f" (kext's CEL engine runs at most {MAX_ITERATIONS} comprehension "
                         "iterations per expression)")
            raise EvaluationError(text) from None
        if result.type() == cel.Type.ERROR:
            raise EvaluationError(_go_error(str(result.value())))
        return result.plain_value()


def _go_error(text: str) -> str:
    text = re.sub(r"^[A-Z_]+: ", "", text)
    m = re.match(r'Key not found in map : "?(.*?)"?$', text)
    if m:
        return f"no such key: {m.group(1)}"
    if text.startswith("No matching overloads") or text.startswith("No overload"):
        return "no such overload"
    m = re.match(r"Index error: index=(-?\d+) size=(\d+)$", text)
    if m:
        return f"index '{m.group(1)}' out of range in list size '{m.group(2)}'"
    replacements = {"divide by zero": "division by zero", "modulus by zero": "modulus by zero"}
    return replacements.get(text, text)


def _type(signature: str) -> Any:
    simple = {"int": cel.Type.INT, "uint": cel.Type.UINT, "double": cel.Type.DOUBLE,
              "bool": cel.Type.BOOL, "string": cel.Type.STRING, "bytes": cel.Type.BYTES,
              "dyn": cel.Type.DYN, "duration": cel.Type.DURATION,
              "timestamp": cel.Type.TIMESTAMP, "null_type": cel.Type.NULL,
              "google.protobuf.Timestamp": cel.Type.TIMESTAMP,
              "google.protobuf.Duration": cel.Type.DURATION}
    if signature in simple:
        return simple[signature]
    if signature.startswith("list(") and signature.endswith(")"):
        return cel.Type.List(_type(signature[5:-1]))
    if signature.startswith("map(") and signature.endswith(")"):
        key, value = _split_pair(signature[4:-1])
        return cel.Type.Map(_type(key), _type(value))
    return cel.Type(signature)


def _split_pair(text: str) -> tuple[str, str]:
    depth = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            return text[:i].strip(), text[i + 1:].strip()
    raise ValueError(f"not a map type: {text}")


def _declarations(functions: Iterable[Function], with_impl: bool) -> list[Any]:
    """Function declarations; with implementations for the runtime, where the engine tells
    overloads apart by argument kind only (list, map, message...), so overloads that share
    kinds become one that picks by the Python values it gets."""
    by_name: dict[str, list[Overload]] = {}
    for fn in functions:
        by_name.setdefault(fn.name, []).extend(fn.overloads)
    decls = []
    for name, overloads in by_name.items():
        if not with_impl:
            decls.append(cel.FunctionDecl(name, [
                cel.Overload(o.id, _type(o.result), [_type(p) for p in o.params],
                             is_member=o.member) for o in overloads]))
            continue
        groups: dict[tuple[bool, tuple[str, ...]], list[Overload]] = {}
        for o in overloads:
            groups.setdefault((o.member, tuple(_kind(p) for p in o.params)), []).append(o)
        runtime = []
        for group in groups.values():
            first = group[0]
            if len(group) == 1:
                runtime.append(cel.Overload(first.id, _type(first.result),
                                            [_type(p) for p in first.params],
                                            is_member=first.member, impl=first.impl))
                continue
            params = [_type({"list": "list(dyn)", "map": "map(dyn, dyn)"}.get(_kind(p), p))
                      for p in first.params]
            # overloads bound per evaluation (authz's check) are bound there as one
            runtime.append(cel.Overload(first.id, cel.Type.DYN, params, is_member=first.member,
                                        impl=None if first.impl is None else _dispatch(group)))
        decls.append(cel.FunctionDecl(name, runtime))
    return decls


def _kind(signature: str) -> str:
    if signature.startswith("list("):
        return "list"
    if signature.startswith("map("):
        return "map"
    if "." in signature and not signature.startswith("google.protobuf."):
        return "message"
    return signature


_PYTHON_TYPES: dict[str, Any] = {
    "int": int, "uint": int, "double": float, "bool": bool, "string": str,
    "bytes": (bytes, bytearray), "duration": timedelta, "timestamp": datetime,
}


def _dispatch(overloads: list[Overload]) -> Any:
    def matches(signature: str, value: Any) -> bool:
        if signature.startswith("list(") and isinstance(value, list):
            return all(matches(signature[5:-1], v) for v in value)
        if "." in signature and not signature.startswith("google.protobuf."):
            descriptor = getattr(value, "DESCRIPTOR", None)
            return descriptor is not None and descriptor.full_name == signature
        python = _PYTHON_TYPES.get(signature)
        return python is None or (isinstance(value, python) and not (
            isinstance(value, bool) and signature != "bool"))

    def run(*args: Any) -> Any:
        for o in overloads:
            if o.impl is not None and all(
                    matches(p, a) for p, a in zip(o.params, args, strict=False)):
                return o.impl(*args)
        raise TypeError("no such overload")
    return run


def _all_functions() -> list[Function]:
    return [fn for library in LIBRARIES for fn in library] + list(_FORMAT_HELPERS)


def plain_functions() -> dict[str, Any]:
    """The Kubernetes libraries as plain Python callables by function name, each choosing
    among its overloads by the values it is given (for engines that take callables; kext's
    benchmarks compare engines with it)."""
    by_name: dict[str, list[Overload]] = {}
    for fn in _all_functions():
        by_name.setdefault(fn.name, []).extend(fn.overloads)
    return {name: _dispatch(overloads) for name, overloads in by_name.items()
            if any(o.impl is not None for o in overloads)}


def _cross_numeric() -> list[Any]:
    return [cel.FunctionDecl(op, [
        cel.Overload(f"{op}_{a}_{b}", cel.Type.BOOL, [_type(a), _type(b)])
        for a, b in _NUMERIC_PAIRS]) for op in _CROSS_NUMERIC]


def _well_known_files() -> list[descriptor_pb2.FileDescriptorProto]:
    files = []
    for module in (struct_pb2, timestamp_pb2, duration_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(fdp)
        files.append(fdp)
    return files


def rewrite_optionals(expression: str) -> str:
    """`format.named(x)` and `f.validate(s)` in the spelling the engine can run."""
    out = expression
    if _NAMED.search(out):
        out = _append_after_call(_outside_strings(out, _NAMED, "format.__kextNamed("),
                                 "format.__kextNamed(", "[?0]")
    if _VALIDATE.search(out):
        out = _append_after_call(_outside_strings(out, _VALIDATE, ".__kextValidate("),
                                 ".__kextValidate(", "[?0]")
    return out


def _outside_strings(text: str, pattern: re.Pattern[str], replacement: str) -> str:
    return pattern.sub(lambda m: m.group(0) if _inside_string(text, m.start())
                       else replacement, text)


def _append_after_call(text: str, opener: str, suffix: str) -> str:
    """`suffix` after the closing parenthesis of each call that starts with `opener`."""
    out, i = [], 0
    while True:
        start = text.find(opener, i)
        while start >= 0 and _inside_string(text, start):
            start = text.find(opener, start + 1)
        if start < 0:
            out.append(text[i:])
            return "".join(out)
        j, depth, quote = start + len(opener), 1, ""
        while j < len(text) and depth:
            ch = text[j]
            if quote:
                if ch == "\\":
                    j += 1
                elif ch == quote:
                    quote = ""
            elif ch in "'\"":
                quote = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            j += 1
        out.append(text[i:j] + suffix)
        i = j


def _inside_string(text: str, at: int) -> bool:
    quote = ""
    i = 0
    while i < at:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        i += 1
    return bool(quote)


class Environment:
    """The CEL types and environments of one set of expressions: a CRD version's rules, or
    (for admission) policies' expressions over their own variables.

    Declare the types expressions read (`declare` for schema nodes), `seal`, then compile:
    `compile` for a validation rule (`self`, `oldSelf`), `compile_expression` for any
    expression over the variables named when the environment was made."""

    def __init__(self, package: str = "kext.schema",
                 variables: Iterable[str] = ("self", _OLD_SELF)) -> None:
        self.types = SchemaTypes(package)
        self.variables = tuple(dict.fromkeys((*variables, _OLD_VALUE, _HAS_OLD)))
        self._pool: Any = None
        self._runtime: Any = None
        self._checkers: dict[tuple[tuple[str, str], ...], Any] = {}

    def declare(self, schema: dict[str, Any], *, root: bool = False) -> str:
        """The CEL type of a value of this schema node (`root`: a resource, with apiVersion,
        kind and metadata.name/generateName)."""
        return self.types.cel_type(schema, embedded=root)

    def declare_object(self, fields: Iterable[str]) -> str:
        """The CEL type of an object with exactly these fields, each dyn."""
        return self.types.object_type(fields)

    def seal(self) -> None:
        pool = descriptor_pool.DescriptorPool()
        for fdp in _well_known_files() + list(types.FILES) + [self.types.file]:
            pool.Add(fdp)
        self._pool = pool
        self._runtime = cel.NewEnv(
            pool, variables={name: cel.Type.BOOL if name == _HAS_OLD else cel.Type.DYN
                             for name in self.variables},
            extensions=[*_extensions(),
                        cel.CelExtension("kubernetes", _declarations(_all_functions(), True))])

    def _checker(self, declared: dict[str, str]) -> Any:
        key = tuple(sorted(declared.items()))
        if key not in self._checkers:
            self._checkers[key] = cel.NewEnv(
                self._pool, variables={name: _type(t) for name, t in declared.items()},
                extensions=[*_extensions(), cel.CelExtension(
                    "kubernetes", _declarations(_all_functions(), False) + _cross_numeric())])
        return self._checkers[key]

    def compile_expression(self, expression: str, declared: dict[str, str], *,
                           result: str = "bool") -> Program:
        """Type-check and plan an expression over `declared` variables (name -> CEL type
        signature, e.g. `{"object": "dyn", "request": "map(string, dyn)"}`); CompileError if
        it does not compile or does not return `result` ("dyn": anything)."""
        if self._runtime is None:
            raise RuntimeError("Environment.seal() must be called before compiling")
        unknown = set(declared) - set(self.variables)
        if unknown:
            raise ValueError(f"variables not in this environment: {sorted(unknown)}")
        return self._compile(rewrite_optionals(expression), expression, declared, result)

    def _compile(self, source: str, expression: str, declared: dict[str, str],
                 result: str) -> Program:
        try:
            checked = self._checker(declared).compile(source)
        except RuntimeError as exc:
            raise CompileError("compilation failed: " + _issues(str(exc))) from exc
        returned = checked.return_type()
        if result != "dyn" and returned != _type(result) and returned != cel.Type.DYN:
            if result == "bool":
                raise CompileError("cel expression must evaluate to a bool")
            raise CompileError(f"must evaluate to a {result}")
        serialized = checked.serialize()
        tree = ast.read_checked(serialized, types="[" in source or "{" in source)
        mixed = ast.mixed_literal(tree)
        if mixed is not None:
            offset, expected, found = mixed
            raise CompileError("compilation failed: " + _located(
                source, offset, f"expected type '{expected}' but found '{found}'"))
        program = self._runtime.deserialize(serialized)
        return Program(expression, program, tree.root, ast.uses_variable(tree.root, _OLD_SELF))

    def compile(self, expression: str, self_type: str, *, result: str = "bool",
                optional_old_self: bool = False) -> Program:
        """A validation rule (or its messageExpression) on a schema node whose values have
        `self_type`; with `optional_old_self`, `oldSelf` is an optional of that type."""
        if self._runtime is None:
            raise RuntimeError("Environment.seal() must be called before compiling")
        source = rewrite_optionals(expression)
        old_type = "dyn" if optional_old_self else self_type
        program = self._compile(source, expression, {"self": self_type, _OLD_SELF: old_type},
                                result)
        if optional_old_self and program.uses_old_self:
            # oldSelf is an optional of the node's type, bound from the old value if any
            # (checked again with the exact types; positions above are the rule's own).
            wrapped = (f"cel.bind({_OLD_SELF}, {_HAS_OLD} ? optional.of({_OLD_VALUE}) : "
                       f"optional.none(), {source})")
            program = self._compile(wrapped, expression, {
                "self": self_type, _OLD_VALUE: self_type, _HAS_OLD: "bool"}, result)
            program.uses_old_self = True
        return program

    def activation(self, value: Any, old: Any = None, has_old: bool = False) -> Any:
        """The variables of one rule evaluation (shared by the rules of one node)."""
        return self._runtime.Activation({"self": value, _OLD_SELF: old, _OLD_VALUE: old,
                                         _HAS_OLD: has_old})

    def bind(self, values: dict[str, Any], authorizer: authz.AuthorizerValue | None = None,
             request_resource: authz.Resource | None = None) -> Any:
        """The variables of one evaluation of `compile_expression` programs; with an
        authorizer, `authorizer` and `authorizer.requestResource` too, and `check` answered
        by it (bind once per expression: see AuthorizerValue)."""
        if authorizer is None:
            return self._runtime.Activation(values)
        # the engine picks a member function by the receiver's kind: one `check` for both
        check = cel.Function("check", _CHECK_PARAMS, True, authorizer.check_function(),
                             _DECISION)
        return self._runtime.Activation({**values, **authorizer.variables(request_resource)},
                                        functions=[check])


def _extensions() -> list[Any]:
    return [ext_strings.ExtStrings(_STRINGS_VERSION), ext_optional.ExtOptional(),
            ext_bindings.ExtBindings()]


def _located(source: str, offset: int, message: str) -> str:
    """An issue as cel-go prints one: position, message, the source line and a caret."""
    line_start = source.rfind("\n", 0, offset) + 1
    line_end = source.find("\n", offset)
    line = source[line_start:line_end if line_end >= 0 else len(source)]
    column = offset - line_start
    number = source.count("\n", 0, offset) + 1
    return (f"ERROR: <input>:{number}:{column + 1}: {message}\n | {line}\n"
            f" | {'.' * column}^")


def _issues(text: str) -> str:
    text = re.sub(r"^INVALID_ARGUMENT: ", "", text)
    return re.sub(r" \[INVALID_ARGUMENT\]$", "", text)


def estimated_cost(program: Program, sizer: cost.Sizer) -> int:
    return cost.estimate(program.tree, sizer, {"self": ("self",), _OLD_SELF: ("self",),
                                               _OLD_VALUE: ("self",)})
