"""The CEL benchmark scripts keep running (figures belong to the README, not to tests)."""

from __future__ import annotations

import pytest

from benchmarks import cel_engines, cel_validation
from tests.cel.kube_examples import EXAMPLES


def test_engine_comparison_runs(capsys: pytest.CaptureFixture[str]) -> None:
    cel_engines.main(["--rounds", "5"])
    rows = {line.split("|")[1].strip(): line.split("|")[3].strip()
            for line in capsys.readouterr().out.splitlines() if line.startswith("| cel")}
    # kext's engine gets every one of kube's examples right.
    assert rows["cel-expr-python"] == str(len(EXAMPLES))


def test_validation_cost_runs(capsys: pytest.CaptureFixture[str]) -> None:
    cel_validation.main(["--rounds", "5", "--no-wire"])
    out = capsys.readouterr().out
    assert out.startswith("rules: 10 ") and "µs per create" in out
