"""CEL for kext: the expression language of CRD validation rules (and, later, admission
policies and webhook matchConditions), with the Kubernetes libraries.

kext.cel depends on nothing else of kext: kext.api.schema compiles a schema's
`x-kubernetes-validations` here and evaluates them on every write.
"""

from kext.cel.cost import (
    PER_CALL_LIMIT,
    RUNTIME_COST_BUDGET,
    STATIC_ESTIMATED_COST_LIMIT,
    STATIC_ESTIMATED_CRD_COST_LIMIT,
    Sizer,
    cardinality,
    schema_sizer,
    value_sizer,
)
from kext.cel.environment import (
    CompileError,
    Environment,
    EvaluationError,
    Program,
    estimated_cost,
)
from kext.cel.schematypes import converter

__all__ = [
    "PER_CALL_LIMIT", "RUNTIME_COST_BUDGET", "STATIC_ESTIMATED_COST_LIMIT",
    "STATIC_ESTIMATED_CRD_COST_LIMIT", "CompileError", "Environment", "EvaluationError",
    "Program", "Sizer", "cardinality", "converter", "estimated_cost", "schema_sizer",
    "value_sizer",
]
