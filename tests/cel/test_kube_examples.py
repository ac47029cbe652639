"""kext's CEL on Kubernetes' own examples: every one evaluates to what kube documents."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cel.kube_examples import EXAMPLES, kext_outcome

# Where kext knowingly differs from kube-apiserver (README, "CEL"): the engine accepts
# mixed-type list literals that cel-go's HomogeneousAggregateLiterals refuses.
KNOWN_DIFFERENCES = {"[1, 'a'].size() == 2"}


@pytest.mark.parametrize(("library", "expression", "schema", "value", "expected"), [
    pytest.param(*e, id=f"{e[0]}: {e[1]}") for e in EXAMPLES if e[1] not in KNOWN_DIFFERENCES])
def test_kube_example(library: str, expression: str, schema: dict[str, Any] | None,
                      value: Any, expected: Any) -> None:
    assert kext_outcome(expression, schema, value) == expected


def test_known_differences_are_still_differences() -> None:
    # When the engine learns homogeneous literals, the list above must shrink.
    for e in EXAMPLES:
        if e[1] in KNOWN_DIFFERENCES:
            assert kext_outcome(e[1], e[2], e[3]) != e[4]
