"""CEL for kext: the expression language of CRD validation rules, webhook matchConditions
(and admission policies), with the Kubernetes libraries, authz's `authorizer` included.

kext.cel depends on nothing else of kext: kext.api.schema compiles a schema's
`x-kubernetes-validations` here and evaluates them on every write; kext.admission.authz
adapts the server's authorizer to the authz library's CheckAuthorizer.
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
from kext.cel.library.authz import VARIABLES as AUTHORIZER_VARIABLES
from kext.cel.library.authz import (
    AuthorizerValue,
    Check,
    CheckAuthorizer,
    Decision,
    Resource,
    ServiceAccount,
    authorized,
)
from kext.cel.schematypes import converter

__all__ = [
    "AUTHORIZER_VARIABLES",
    "PER_CALL_LIMIT",
    "RUNTIME_COST_BUDGET",
    "STATIC_ESTIMATED_COST_LIMIT",
    "STATIC_ESTIMATED_CRD_COST_LIMIT",
    "AuthorizerValue",
    "Check",
    "CheckAuthorizer",
    "CompileError",
    "Decision",
    "Environment",
    "EvaluationError",
    "Program",
    "Resource",
    "ServiceAccount",
    "Sizer",
    "authorized",
    "cardinality",
    "converter",
    "estimated_cost",
    "schema_sizer",
    "value_sizer",
]
