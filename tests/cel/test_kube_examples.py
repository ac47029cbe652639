"""kext's CEL on Kubernetes' own examples: every one evaluates to what kube documents."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cel.kube_examples import EXAMPLES, kext_outcome


@pytest.mark.parametrize(("library", "expression", "schema", "value", "expected"), [
    pytest.param(*e, id=f"{e[0]}: {e[1]}") for e in EXAMPLES])
def test_kube_example(library: str, expression: str, schema: dict[str, Any] | None,
                      value: Any, expected: Any) -> None:
    assert kext_outcome(expression, schema, value) == expected
