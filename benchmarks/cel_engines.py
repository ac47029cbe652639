"""Which CEL engine kext uses, by measurement: `python -m benchmarks.cel_engines`.

Runs Kubernetes' own CEL examples (tests/cel/kube_examples.py: kubernetes.io's rule tables and
the examples of k8s.io/apiserver's CEL libraries) on each candidate from PyPI, with the
Kubernetes library functions added (kext.cel.library's implementations, registered as each
engine allows), and times compilation and evaluation:

- cel-expr-python (Google's C++ CEL, type-checked), as kext.cel drives it;
- common-expression-language (the Rust `cel` crate), with its cel-go-like stdlib;
- cel-python (pure Python, celpy).

An engine missing from the environment is reported as such. The README's CEL section holds a
run's table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

from kext.cel.environment import plain_functions
from tests.cel.kube_examples import COMPILE_ERROR, ERROR, EXAMPLES

# Rules timed per evaluation: a cross-field rule, a list-map filter with a regex, a quantity.
TIMED = [
    ("self.minReplicas <= self.replicas && self.replicas <= self.maxReplicas",
     {"minReplicas": 1, "replicas": 3, "maxReplicas": 5}),
    ("self.envars.filter(e, e.name == 'MY_ENV').all(e, e.value.matches('^[a-zA-Z]*$'))",
     {"envars": [{"name": f"V{i}", "value": "abc"} for i in range(9)]
      + [{"name": "MY_ENV", "value": "abc"}]}),
    ("quantity(self.memory).isLessThan(quantity('1Gi'))", {"memory": "512Mi"}),
]


class Unsupported(Exception):
    pass


# -- the engines: compile(expression, schema) -> run(value) -> result


def kext_engine() -> Callable[[str, dict[str, Any] | None], Callable[[Any], Any]]:
    from kext import cel

    # One environment per schema, as kext builds one per CRD version (~2 ms, not timed here).
    envs: dict[int, tuple[Any, str]] = {}

    def compile_(expression: str, schema: dict[str, Any] | None) -> Callable[[Any], Any]:
        if id(schema) not in envs:
            env = cel.Environment()
            self_type = env.declare(schema) if schema is not None else "dyn"
            env.seal()
            envs[id(schema)] = env, self_type
        env, self_type = envs[id(schema)]
        try:
            program = env.compile(expression, self_type, result="dyn")
        except cel.CompileError as exc:
            raise Unsupported(str(exc)) from exc
        convert = cel.converter(schema) if schema is not None else None

        def run(value: Any) -> Any:
            bound = convert(value) if convert is not None else value
            return program.evaluate(env.activation(bound))
        return run
    return compile_


def _plain(value: Any) -> Any:
    """A JSON value with kube's types for formats, as Python datetimes."""
    if hasattr(value, "ToDatetime"):
        return value.ToDatetime(tzinfo=UTC)
    if hasattr(value, "ToTimedelta"):
        return value.ToTimedelta()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _native(value: Any) -> Any:
    """celpy's values (BoolType, IntType, ListType... subclasses of int, list...) as Python's."""
    if isinstance(value, bool) or type(value).__name__ == "BoolType":
        return bool(value)
    if isinstance(value, dict):
        return {_native(k): _native(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_native(v) for v in value]
    for plain in (int, float, str):
        if isinstance(value, plain):
            return plain(value)
    return value


def rust_engine() -> Callable[[str, dict[str, Any] | None], Callable[[Any], Any]]:
    import cel as rust_cel
    from cel.stdlib import add_stdlib_to_context

    from kext import cel as kcel

    functions = plain_functions()

    def compile_(expression: str, schema: dict[str, Any] | None) -> Callable[[Any], Any]:
        try:
            program = rust_cel.compile(expression)
        except Exception as exc:
            raise Unsupported(str(exc)) from exc
        convert = kcel.converter(schema) if schema is not None else None
        ctx = rust_cel.Context()
        add_stdlib_to_context(ctx)
        for name, fn in functions.items():
            ctx.add_function(name, fn)

        def run(value: Any) -> Any:
            bound = _plain(convert(value)) if convert is not None else value
            ctx.add_variable("self", bound)
            return program.execute(ctx)
        return run
    return compile_


def celpy_engine() -> Callable[[str, dict[str, Any] | None], Callable[[Any], Any]]:
    import celpy

    from kext import cel as kcel

    functions = plain_functions()
    env = celpy.Environment()

    def compile_(expression: str, schema: dict[str, Any] | None) -> Callable[[Any], Any]:
        try:
            program = env.program(env.compile(expression), functions=functions)
        except Exception as exc:
            raise Unsupported(str(exc)) from exc
        convert = kcel.converter(schema) if schema is not None else None

        def run(value: Any) -> Any:
            bound = _plain(convert(value)) if convert is not None else value
            result = program.evaluate({"self": celpy.json_to_cel(bound)})
            if isinstance(result, Exception):
                raise result
            return _native(result)
        return run
    return compile_


ENGINES: dict[str, tuple[str, Callable[[], Any]]] = {
    "cel-expr-python": ("cel_expr_python", kext_engine),
    "common-expression-language": ("cel", rust_engine),
    "cel-python": ("celpy", celpy_engine),
}


def _same(got: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(got) is type(expected) or (bool(got) is expected and not isinstance(got, int))
    if isinstance(expected, (list, dict)):
        try:
            return _normal(got) == _normal(expected)
        except TypeError:
            return False
    try:
        return bool(got == expected) and type(got) in (type(expected), int, float) and (
            isinstance(expected, str) == isinstance(got, str))
    except Exception:
        return False


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def conformance(compile_: Callable[..., Any]) -> tuple[int, list[str]]:
    right, wrong = 0, []
    for library, expression, schema, value, expected in EXAMPLES:
        try:
            run = compile_(expression, schema)
        except Unsupported:
            outcome: Any = COMPILE_ERROR
        else:
            try:
                outcome = run(value)
            except Exception:
                outcome = ERROR
        if outcome is ERROR or outcome is COMPILE_ERROR or expected in (ERROR, COMPILE_ERROR):
            ok = outcome is expected
        else:
            ok = _same(outcome, expected)
        if ok:
            right += 1
        else:
            wrong.append(f"{library}: {expression} -> {outcome!r} (kube: {expected!r})")
    return right, wrong


def timings(compile_: Callable[..., Any], rounds: int) -> tuple[float, list[float | None]]:
    compiles = []
    for _, expression, schema, _, expected in EXAMPLES:
        if expected == COMPILE_ERROR:
            continue
        start = time.perf_counter()
        try:
            compile_(expression, schema)
        except Unsupported:
            continue
        compiles.append(time.perf_counter() - start)
    schema_of: dict[str, Any] = {e[1]: e[2] for e in EXAMPLES}
    evals: list[float | None] = []
    for expression, value in TIMED:
        schema = schema_of.get(expression) or {"type": "object", "properties": {
            "memory": {"type": "string"}}}
        try:
            run = compile_(expression, schema)
            run(value)
        except Exception:
            evals.append(None)
            continue
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(rounds):
                run(value)
            samples.append((time.perf_counter() - start) / rounds)
        evals.append(min(samples))
    return statistics.median(compiles) if compiles else float("nan"), evals


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cel_engines",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000, help="evaluations per timing")
    parser.add_argument("--verbose", action="store_true", help="list every wrong example")
    args = parser.parse_args(argv)
    print(f"{len(EXAMPLES)} examples; evaluation timed on: "
          + "; ".join(e for e, _ in TIMED))
    print(f"| engine | version | right of {len(EXAMPLES)} | compile (median, µs) | "
          "evaluation (µs): cross-field / list filter + regex / quantity |")
    print("|---|---|---|---|---|")
    from importlib import metadata
    for dist, (module, make) in ENGINES.items():
        try:
            __import__(module)
            version = metadata.version(dist)
        except ImportError:
            print(f"| {dist} | not installed | | | |")
            continue
        compile_ = make()
        right, wrong = conformance(compile_)
        compile_time, evals = timings(compile_, args.rounds if module != "celpy" else
                                      max(1, args.rounds // 20))
        shown = " / ".join(f"{e * 1e6:.1f}" if e is not None else "fails" for e in evals)
        print(f"| {dist} | {version} | {right} | {compile_time * 1e6:.0f} | {shown} |")
        if args.verbose:
            for line in wrong:
                print(f"    wrong: {line}")


if __name__ == "__main__":
    main()
